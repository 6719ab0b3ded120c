"""sklearn-din: the Deep Interest Network (DIN) as scikit-learn estimators."""

from ._classifier import DINClassifier, NoHistoryWarning
from ._network import DeepInterestNetwork, Dice
from ._transformer import SequenceFeatureTransformer
from ._version import __version__

__all__ = [
    "DINClassifier",
    "DeepInterestNetwork",
    "Dice",
    "NoHistoryWarning",
    "SequenceFeatureTransformer",
    "__version__",
]
