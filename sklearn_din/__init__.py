"""sklearn-din: the Deep Interest Network (DIN) as scikit-learn estimators."""

from ._callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from ._classifier import DINClassifier, NoHistoryWarning
from ._explain import explain_attention
from ._export import export_onnx, export_program, export_tables, onnx_inputs
from ._network import (
    AttentionScorer,
    DeepInterestNetwork,
    Dice,
    DotProductScorer,
    LocalActivationUnit,
    MeanPooling,
    SumPooling,
)
from ._persistence import ModelFileError, load_model, save_model
from ._scoring import onnx_request_inputs, score_candidates
from ._streaming import fit_stream
from ._transformer import SequenceFeatureTransformer, UnknownUsersWarning
from ._version import __version__

__all__ = [
    "AttentionScorer",
    "DINClassifier",
    "DeepInterestNetwork",
    "Dice",
    "DotProductScorer",
    "LocalActivationUnit",
    "MeanPooling",
    "ModelFileError",
    "NoHistoryWarning",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "SumPooling",
    "UnknownUsersWarning",
    "SequenceFeatureTransformer",
    "__version__",
    "explain_attention",
    "export_onnx",
    "export_program",
    "export_tables",
    "fit_stream",
    "load_model",
    "onnx_inputs",
    "onnx_request_inputs",
    "save_model",
    "score_candidates",
]
