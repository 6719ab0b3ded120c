"""Saving and loading fitted models without pickle.

A saved model is one ``.npz`` file read with ``allow_pickle=False``: JSON for the
configuration and small fitted values, plain numeric/string arrays for the
vocabularies, behaviour store and network weights. Loading it runs no code from
the file, unlike unpickling (only load pickles from sources you trust).
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._behaviour_store import BehaviourStore
from ._classifier import DINClassifier
from ._layout import InputLayout
from ._network import DeepInterestNetwork
from ._sklearn_steps import KIND as SKLEARN_KIND
from ._sklearn_steps import load_sklearn_step, sklearn_step_state
from ._transformer import SequenceFeatureTransformer
from ._version import __version__

FORMAT = "sklearn-din"
FORMAT_VERSION = 1

# Only these classes can be named in a saved classifier: a file never chooses code to run.
_CRITERIA = {"BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss}
_MODULES = {"DeepInterestNetwork": DeepInterestNetwork}
_FLAT_PARAMS = (
    "embed_dim", "attention_units", "hidden_units", "activation", "attention_normalization",
    "pooling", "dropout", "batch_norm", "pooled_product", "embedding_l2", "user_col",
    "user_embedding",
    "categorical_cols", "lr", "max_epochs", "batch_size", "early_stopping",
    "validation_fraction", "n_iter_no_change", "device", "verbose", "threshold", "warm_start",
)


class ModelFileError(ValueError):
    """A file is not a readable sklearn-din model (truncated, tampered, or another format).

    A subclass of ``ValueError``; :func:`load_model` shows an example.
    """


def _array(values: np.ndarray, what: str) -> np.ndarray:
    """An array numpy can store without pickle (numbers, booleans or str)."""
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        return values
    if values.dtype.kind in "OU" and all(isinstance(v, str) for v in values.tolist()):
        return values.astype(str)
    raise TypeError(
        f"save: {what} holds values of type(s) "
        f"{sorted({type(v).__name__ for v in values.tolist()})}; only numbers, booleans and "
        "strings can be saved without pickle. Use joblib/pickle for such a model."
    )


# ------------------------------------------------------------------ transformer
def _transformer_state(t: SequenceFeatureTransformer, arrays: dict, prefix: str) -> dict:
    for col, vocab in t.vocabularies_.items():
        arrays[f"{prefix}vocab/{col}"] = _array(vocab, f"the vocabulary of column {col!r}")
    store = t.behaviour_store_
    arrays[f"{prefix}store/users"] = store.users
    arrays[f"{prefix}store/times"] = store.times
    arrays[f"{prefix}store/codes"] = store.behaviour_codes()
    return {
        "params": t.get_params(),
        "feature_names_in": [str(c) for c in t.feature_names_in_],
        "time_kind": t.time_kind_,
        "recency_unit": t.recency_unit_,
        "vocabulary_columns": list(t.vocabularies_),
    }


def _load_transformer(state: dict, arrays: dict, prefix: str) -> SequenceFeatureTransformer:
    params = dict(state["params"])
    params["history_cols"] = tuple(params["history_cols"])
    params["categorical_cols"] = tuple(params.get("categorical_cols", ()))
    t = SequenceFeatureTransformer(**params)
    t.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
    t.n_features_in_ = len(t.feature_names_in_)
    t.time_kind_ = state["time_kind"]
    t.recency_unit_ = float(state.get("recency_unit", 1.0))  # files of 0.1 have none
    t.vocabularies_ = {c: arrays[f"{prefix}vocab/{c}"] for c in state["vocabulary_columns"]}
    t.behaviour_store_ = BehaviourStore.from_arrays(
        arrays[f"{prefix}store/users"], arrays[f"{prefix}store/times"],
        arrays[f"{prefix}store/codes"],
    )
    t.n_behaviours_ = len(t.behaviour_store_)
    return t


# ------------------------------------------------------------------ classifier
def _classifier_state(c: DINClassifier, arrays: dict, prefix: str) -> dict:
    if c.module not in _MODULES.values() or c.criterion not in _CRITERIA.values():
        raise TypeError("save: only the built-in DeepInterestNetwork and BCEWithLogitsLoss can "
                        "be saved without pickle; use joblib/pickle for a custom module.")
    if not (isinstance(c.optimizer, type) and getattr(torch.optim, c.optimizer.__name__, None)
            is c.optimizer):
        raise TypeError(f"save: optimizer {c.optimizer!r} is not a torch.optim class.")
    skipped = [name for name in ("callbacks", "train_split") if getattr(c, name) is not None]
    if skipped:
        warnings.warn(f"save: {skipped} are training settings that are not saved; the "
                      "loaded model predicts the same but trains with the defaults.",
                      UserWarning, stacklevel=3)
    params = {name: getattr(c, name) for name in _FLAT_PARAMS}
    params["device"] = str(params["device"])
    params["random_state"] = c.random_state if isinstance(c.random_state, int) else None
    prefixed = {k: v for k, v in c.get_params(deep=False).items()
                if k.startswith(("module__", "optimizer__")) and _jsonable(v)}
    arrays[f"{prefix}classes"] = _array(c.classes_, "classes_")
    for t, counts in enumerate(c.id_frequencies_):
        arrays[f"{prefix}frequency/{t}"] = counts
    for name, tensor in c.module_.state_dict().items():
        arrays[f"{prefix}weights/{name}"] = tensor.detach().cpu().numpy()
    history = [{k: v for k, v in epoch.items() if k != "batches" and _jsonable(v)}
               for epoch in c.history_]
    return {
        "params": params,
        "prefixed_params": prefixed,
        "optimizer": c.optimizer.__name__,
        "layout": asdict(c.layout_),
        "history_vocab_sizes": list(c.history_vocab_sizes_),
        "sparse_vocab_sizes": list(c.sparse_vocab_sizes_),
        "n_features_in": c.n_features_in_,
        "feature_names_in": [str(n) for n in getattr(c, "feature_names_in_", [])] or None,
        "n_tables": len(c.id_frequencies_),
        "history": history,
    }


def _load_classifier(state: dict, arrays: dict, prefix: str, device: str | None) -> DINClassifier:
    params = dict(state["params"])
    for name in ("attention_units", "hidden_units", "categorical_cols"):
        params[name] = tuple(params[name])
    if device is not None:
        params["device"] = device
    elif params["device"].startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"load: the model was saved on {params['device']!r} and CUDA is not "
                      "available here; loading it on 'cpu'.", UserWarning, stacklevel=3)
        params["device"] = "cpu"
    optimizer = getattr(torch.optim, state["optimizer"], None)
    if not isinstance(optimizer, type):
        raise ModelFileError(f"unknown optimizer {state['optimizer']!r} in the model file.")
    c = DINClassifier(optimizer=optimizer, **params, **state["prefixed_params"])
    layout = state["layout"]
    c.layout_ = InputLayout(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in layout.items()})
    c.classes_ = arrays[f"{prefix}classes"]
    c.history_vocab_sizes_ = tuple(state["history_vocab_sizes"])
    c.sparse_vocab_sizes_ = tuple(state["sparse_vocab_sizes"])
    c.n_features_in_ = state["n_features_in"]
    if state["feature_names_in"] is not None:
        c.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
    c.id_frequencies_ = [arrays[f"{prefix}frequency/{t}"] for t in range(state["n_tables"])]
    c.initialize()
    weights = {k[len(prefix) + len("weights/"):]: torch.from_numpy(v.copy())
               for k, v in arrays.items() if k.startswith(f"{prefix}weights/")}
    c.module_.load_state_dict(weights, strict=True)
    c.module_.to(c.device)
    for epoch in state["history"]:
        c.history_.new_epoch()
        for key, value in epoch.items():
            c.history_.record(key, value)
    return c


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


_SAVERS: dict[type, tuple[str, Callable]] = {
    SequenceFeatureTransformer: ("transformer", _transformer_state),
    DINClassifier: ("classifier", _classifier_state),
}


# ------------------------------------------------------------------ public API
def save_model(model: object, path: str | os.PathLike) -> None:
    """Save a fitted model to one file that loads without unpickling code.

    Parameters
    ----------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline
        A fitted estimator, or a pipeline of them and scikit-learn's own steps (a
        ColumnTransformer, a scaler, frozen or not: saved with skops, which loads only
        scikit-learn's and numpy's types; needs ``pip install "sklearn-din[skops]"``).
        A step holding anything else is refused with its name. Callbacks,
        ``train_split`` and optimizer state are training-time settings and are not
        saved.
    path : str or path-like
        Destination, conventionally ending in ``.npz``.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from sklearn_din import SequenceFeatureTransformer, save_model, load_model
    >>> log = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 5],
    ...                     "cate_id": [1, 1, 1], "time": [1, 2, 3]})
    >>> t = SequenceFeatureTransformer(max_len=2).fit(log)
    >>> path = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> save_model(t, path)
    >>> load_model(path).transform(log).equals(t.transform(log))
    True
    """
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    arrays: dict[str, np.ndarray] = {}
    meta_steps = []
    for i, (name, step) in enumerate(steps):
        frozen = isinstance(step, FrozenEstimator)
        step = step.estimator if frozen else step
        saver = _SAVERS.get(type(step))
        if saver is None and not isinstance(model, Pipeline):
            raise TypeError(f"save_model: cannot save a {type(step).__name__}; supported: "
                            "SequenceFeatureTransformer, DINClassifier and pipelines of them "
                            "and scikit-learn's own steps.")
        if saver is None:  # scikit-learn's own steps, through skops (see _sklearn_steps)
            kind, state = SKLEARN_KIND, sklearn_step_state(name, step, arrays, f"{i}/")
        else:
            kind, state_of = saver
            check_is_fitted(step)
            state = state_of(step, arrays, f"{i}/")
        meta_steps.append({"name": name, "kind": kind, "frozen": frozen, "state": state})
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sklearn_din": __version__,
            "pipeline": isinstance(model, Pipeline), "steps": meta_steps}
    arrays["meta"] = np.asarray(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)


def load_model(path: str | os.PathLike, *, device: str | None = None) -> object:
    """Load a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
        The file.
    device : str or None, default=None
        Device for a classifier; None keeps the saved one (or "cpu", with a
        warning, when a CUDA model is loaded where CUDA is not available).

    Returns
    -------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline

    Raises
    ------
    ModelFileError
        The file is truncated, tampered with, of another format, or written by a
        newer release of the format.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_din import ModelFileError, load_model
    >>> path = os.path.join(tempfile.mkdtemp(), "not-a-model.npz")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"hello")
    >>> try:
    ...     load_model(path)
    ... except ModelFileError as error:
    ...     print("refused")
    refused
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # numpy's own text suggests allow_pickle=True for pickled content: never here.
        reason = "it holds pickled objects" if "allow_pickle" in str(exc) else (
            f"{type(exc).__name__}: {exc}")
        raise ModelFileError(f"{os.fspath(path)} is not a readable sklearn-din model file "
                             f"({reason}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{os.fspath(path)} is not an sklearn-din model file.")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{os.fspath(path)} was saved by sklearn-din {meta.get('sklearn_din')} in format "
            f"version {meta['format_version']}; this release ({__version__}) reads up to "
            f"version {FORMAT_VERSION}: upgrade sklearn-din."
        )
    steps = []
    try:
        for i, step in enumerate(meta["steps"]):
            if step["kind"] == "transformer":
                loaded = _load_transformer(step["state"], arrays, f"{i}/")
            elif step["kind"] == "classifier":
                loaded = _load_classifier(step["state"], arrays, f"{i}/", device)
            elif step["kind"] == SKLEARN_KIND:
                loaded = load_sklearn_step(step["state"], arrays, f"{i}/")
            else:
                raise ModelFileError(f"unknown step kind {step['kind']!r}")
            steps.append((step["name"], FrozenEstimator(loaded) if step.get("frozen") else loaded))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{os.fspath(path)} is damaged or inconsistent "
                             f"({type(exc).__name__}: {exc}).") from None
    return Pipeline(steps) if meta["pipeline"] else steps[0][1]
