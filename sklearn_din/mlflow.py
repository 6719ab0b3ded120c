"""An MLflow flavour for sklearn-din models, stored without pickle.

The model travels as the file :func:`sklearn_din.save_model` writes (no pickle: JSON
and plain arrays, scikit-learn steps through skops); the MLflow model directory
holds that file under ``data/`` and an ``MLmodel`` whose ``python_function`` flavour
names this module as its loader, so ``mlflow.pyfunc.load_model`` runs no code from
the file either. Needs ``pip install "sklearn-din[mlflow]"`` (``mlflow-skinny``
suffices; the full ``mlflow`` package works too).

``mlflow.pyfunc.load_model(uri).predict(X)`` returns the probability of
``classes_[1]`` for each row of ``X`` (what ``predict_proba(X)[:, 1]`` gives);
:func:`load_model` returns the sklearn-din estimator itself.

Examples
--------
>>> import os, tempfile
>>> import mlflow
>>> import numpy as np
>>> from sklearn.pipeline import make_pipeline
>>> import sklearn_din.mlflow
>>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
>>> from sklearn_din.datasets import make_interactions, sample_negatives
>>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
>>> X, y = rows.drop(columns="label"), rows["label"]
>>> model = make_pipeline(SequenceFeatureTransformer(max_len=10),
...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
>>> path = os.path.join(tempfile.mkdtemp(), "din-mlflow")
>>> sklearn_din.mlflow.save_model(model, path)
>>> served = mlflow.pyfunc.load_model(path)
>>> bool(np.allclose(served.predict(X), model.predict_proba(X)[:, 1]))
True
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ._persistence import load_model as _load_npz
from ._persistence import save_model as _save_npz
from ._version import __version__

FLAVOR_NAME = "sklearn_din"
_DATA_FILE = "model.npz"


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise ImportError('sklearn_din.mlflow needs MLflow: pip install "sklearn-din[mlflow]"'
                          ) from None
    return mlflow


def _requirements(model: object) -> list[str]:
    from sklearn.pipeline import Pipeline

    from ._persistence import _KINDS

    requirements = [f"sklearn-din=={__version__}"]
    steps = model.steps if isinstance(model, Pipeline) else []
    others = [s for _, s in steps if type(getattr(s, "estimator", s)) not in _KINDS
              and s not in ("passthrough", None)]
    if others:
        import skops

        requirements.append(f"skops=={skops.__version__}")
    return requirements


def save_model(
    model: object,
    path: str | os.PathLike,
    *,
    mlflow_model: object = None,
    signature: object = None,
    input_example: object = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
) -> None:
    """Write ``model`` as an MLflow model directory at ``path`` (which must not exist).

    Parameters
    ----------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline
        Anything :func:`sklearn_din.save_model` saves; as a pyfunc model it should end
        in a DINClassifier.
    path : str or path-like
        The directory to create.
    mlflow_model : mlflow.models.Model or None, default=None
        Passed on by :func:`log_model`.
    signature, input_example, pip_requirements, extra_pip_requirements, metadata
        As in ``mlflow.pyfunc.save_model``. The signature is inferred from
        ``input_example`` when not given; ``pip_requirements`` defaults to this
        sklearn-din release (and skops when the pipeline needs it).
    """
    mlflow = _mlflow()
    from mlflow.models import Model

    mlflow_model = Model() if mlflow_model is None else mlflow_model
    mlflow_model.add_flavor(FLAVOR_NAME, data=f"data/{_DATA_FILE}", sklearn_din_version=__version__)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / _DATA_FILE
        _save_npz(model, data)
        if signature is None and input_example is not None and hasattr(model, "predict_proba"):
            signature = mlflow.models.infer_signature(
                input_example, model.predict_proba(input_example)[:, 1])
        if pip_requirements is None and extra_pip_requirements is None:
            pip_requirements = _requirements(model)
        mlflow.pyfunc.save_model(
            path, loader_module=__name__, data_path=str(data), mlflow_model=mlflow_model,
            signature=signature, input_example=input_example, pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements, metadata=metadata,
        )


def log_model(model: object, name: str = "model", **kwargs: object) -> object:
    """Log ``model`` to the active MLflow run (or a new one); returns MLflow's ModelInfo.

    Parameters
    ----------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline
        The fitted model.
    name : str, default="model"
        The logged model's name.
    **kwargs
        Passed to :func:`save_model` (``signature``, ``input_example``, ...) and to
        ``mlflow.models.Model.log`` (``registered_model_name``, ...).
    """
    _mlflow()
    import sys

    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], model=model,
                     **kwargs)


def load_model(model_uri: str, *, dst_path: str | None = None, device: str | None = None
               ) -> object:
    """The sklearn-din estimator of an MLflow model (a path, ``runs:/`` or ``models:/`` URI).

    Parameters
    ----------
    model_uri : str
        Where the model is.
    dst_path : str or None, default=None
        Where to download it; None uses a temporary directory.
    device : str or None, default=None
        As in :func:`sklearn_din.load_model`.
    """
    mlflow = _mlflow()
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    flavor = Model.load(str(local)).flavors.get(FLAVOR_NAME)
    if flavor is None:
        raise ValueError(f"{model_uri} is not an sklearn-din MLflow model (no {FLAVOR_NAME!r} "
                         "flavour in its MLmodel).")
    return _load_npz(local / flavor["data"], device=device)


class _PyFuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: predict = P(classes_[1]) per row."""

    def __init__(self, model: object) -> None:
        self.model = model

    def get_raw_model(self) -> object:
        return self.model

    def predict(self, model_input: object, params: dict | None = None) -> np.ndarray:
        return self.model.predict_proba(model_input)[:, 1]


def _load_pyfunc(path: str) -> _PyFuncModel:
    """Entry point of the ``python_function`` flavour (``loader_module``)."""
    return _PyFuncModel(_load_npz(path))
