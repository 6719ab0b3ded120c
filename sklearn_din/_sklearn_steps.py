"""Saving scikit-learn's own pipeline steps (a ColumnTransformer, a scaler) without pickle.

:func:`save_model` writes sklearn-din's estimators in its own format; any other step
of a pipeline is serialised with skops (``skops.io``), which stores an object's state
as JSON and loads it back creating only types on its trusted list: scikit-learn's
estimators, numpy and scipy types and builtins. A step that holds anything else (a
custom class, a lambda) is refused at save time with its name, and a file whose
skops payload names an untrusted type is refused at load time.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

KIND = "sklearn"
_PASSTHROUGH = ("passthrough", None)


def _skops():
    try:
        import skops.io
    except ImportError:
        raise ImportError(
            "saving or loading pipeline steps other than sklearn-din's own needs skops: "
            'pip install "sklearn-din[skops]"'
        ) from None
    return skops.io


def sklearn_step_state(name: str, step: object, arrays: dict, prefix: str) -> dict:
    """Serialise a scikit-learn step into ``arrays``; a clear TypeError if it cannot be."""
    if isinstance(step, str | None) and step in _PASSTHROUGH:
        return {"passthrough": step}
    module = type(step).__module__
    if not module.startswith("sklearn."):
        raise TypeError(
            f"save_model: cannot save step {name!r} ({type(step).__name__} from {module}): "
            "only sklearn-din's estimators and scikit-learn's own steps can be saved without "
            "pickle. Use joblib/pickle for such a pipeline (load it only from trusted sources)."
        )
    check_is_fitted(step)
    sio = _skops()
    try:
        data = sio.dumps(step)
    except Exception as exc:  # skops raises many kinds for objects it cannot represent
        raise TypeError(f"save_model: cannot save step {name!r} ({type(step).__name__}): "
                        f"skops could not serialise it ({type(exc).__name__}: {exc}).") from None
    untrusted = sio.get_untrusted_types(data=data)
    if untrusted:
        raise TypeError(
            f"save_model: cannot save step {name!r} ({type(step).__name__}): it holds "
            f"{untrusted}, which are neither scikit-learn's nor numpy's. Use joblib/pickle for "
            "such a pipeline (load it only from trusted sources)."
        )
    arrays[f"{prefix}skops"] = np.frombuffer(data, dtype=np.uint8)
    return {"class": f"{module}.{type(step).__qualname__}"}


def load_sklearn_step(state: dict, arrays: dict, prefix: str) -> object:
    """The step saved by :func:`sklearn_step_state`, created from trusted types only."""
    if "passthrough" in state:
        if state["passthrough"] not in _PASSTHROUGH:
            raise ValueError(f"unknown passthrough step {state['passthrough']!r}")
        return state["passthrough"]
    sio = _skops()
    data = arrays[f"{prefix}skops"].tobytes()
    untrusted = sio.get_untrusted_types(data=data)
    if untrusted:
        # Raised as ValueError: load_model reports it as a damaged or tampered file.
        raise ValueError(f"step of class {state.get('class')!r} names types outside "
                         f"scikit-learn and numpy: {untrusted}")
    return sio.loads(data)
