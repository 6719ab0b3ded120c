"""Saving and loading fitted models without pickle.

A saved model is one ``.npz`` file (see ``_model_file``): a JSON header with each
step's parameters and fitted attributes, and plain numeric/string arrays for the
vocabularies, behaviour store and network weights. What is saved is derived from
the estimator (every ``get_params()`` parameter and every fitted attribute, see
``_saved_values``), and everything loaded is checked (types, shapes, ranges, and
that the parts agree with each other) before a model is built from it. Loading runs
no code from the file, unlike unpickling (only load pickles from sources you trust).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._behaviour_store import BehaviourStore
from ._classifier import DINClassifier, _check_device, _parse_device
from ._layout import InputLayout
from ._model_file import ModelFileError, ModelFileReader, write_model_file
from ._saved_values import Decoder, Encoder, Unsaveable, behaviour_store, plain_json
from ._sklearn_steps import KIND as SKLEARN_KIND
from ._sklearn_steps import load_sklearn_step, sklearn_step_state
from ._times import FLOAT64, INT64, LEGACY_DATETIME, TIME_DTYPES, time_kind
from ._transformer import SequenceFeatureTransformer
from ._version import __version__

__all__ = ["ModelFileError", "load_model", "save_model"]

FORMAT = "sklearn-din"
FORMAT_VERSION = 2  # 2: every parameter and fitted attribute, typed; 1: sklearn-din 0.1.0
_KINDS: dict[type, str] = {SequenceFeatureTransformer: "transformer", DINClassifier: "classifier"}
_CLASSES = {kind: cls for cls, kind in _KINDS.items()}
# Parameters a classifier cannot predict without: refused at save if not saveable.
_NEEDED_TO_PREDICT = ("module", "criterion", "attention_scorer", "module__attention_scorer")
# Attributes skorch builds from the parameters in initialize() (and the fit's log): not
# fitted state. The network's weights and the epoch log are saved apart.
_SKORCH_RUNTIME = frozenset({
    "history_", "initialized_", "virtual_params_", "init_context_", "callbacks_",
    "prefixes_", "cuda_dependent_attributes_", "data_parallel_",
    "module_", "criterion_", "optimizer_", "optimizer_embeddings_",
})
# Parameters added since format 2 began (its files hold every parameter of their day), at
# the values that reproduce the models of files without them.
_ADDED_SINCE_FORMAT_2 = {
    "transformer": {},
    "classifier": {"attention_length_scale": False, "attention_embedding_gradient": 1.0,
                   "behaviour_dropout": 0.0, "weight_averaging": None,
                   "attention_sink": False, "refit": False, "standardize_numeric": False,
                   "attention_position": False},
}
# Parameters that sklearn-din 0.1.0 did not have (so its files do not hold them), at the
# values that reproduce its models: today's defaults differ. Those added since format 2
# began are missing from 0.1.0's files too.
_VERSION_1_PARAMS = {
    "transformer": {"recency": False, "categorical_cols": (),
                    **_ADDED_SINCE_FORMAT_2["transformer"]},
    "classifier": {"user_embedding": True, "early_stopping": False, "pooled_product": False,
                   **_ADDED_SINCE_FORMAT_2["classifier"]},
}
# The InputLayout fields files of format 1 hold (later fields are derived again).
_VERSION_1_LAYOUT = ("history_features", "max_len", "has_hist_len", "sparse_cols", "dense_cols")


def _runtime_attributes(estimator: object) -> set[str]:
    registered = [*getattr(estimator, "_modules", []), *getattr(estimator, "_criteria", []),
                  *getattr(estimator, "_optimizers", [])]
    return {*_SKORCH_RUNTIME, *(f"{name}_" for name in registered)}


def _fitted_attributes(estimator: object) -> dict[str, object]:
    """The estimator's fitted state: its trailing-underscore attributes, skorch's own aside."""
    runtime = _runtime_attributes(estimator)
    return {k: v for k, v in vars(estimator).items()
            if k.endswith("_") and not k.startswith("_") and k not in runtime}


@dataclasses.dataclass
class _Step:
    """One saved estimator, decoded but not yet checked."""

    name: str
    kind: str
    frozen: bool
    params: dict
    fitted: dict
    weights: dict
    history: list
    not_saved: list
    # scikit-learn's own steps: their state and arrays, rebuilt by skops (_sklearn_steps)
    sklearn_state: dict | None = None
    sklearn_arrays: dict | None = None
    prefix: str = ""
    # format 1: which InputLayout fields the file holds (the others are derived again)
    layout_fields: tuple[str, ...] | None = None


# ------------------------------------------------------------------ saving
def _encode_step(name: str, estimator: object, frozen: bool, arrays: dict, prefix: str) -> dict:
    kind = _KINDS[type(estimator)]
    encoder = Encoder(arrays, prefix)
    params, not_saved = {}, {}
    for key, value in estimator.get_params(deep=False).items():
        try:
            params[key] = encoder.encode(value)
        except Unsaveable as reason:
            if kind == "classifier" and key in _NEEDED_TO_PREDICT:
                raise TypeError(
                    f"save_model: {key}={value!r} of step {name!r} cannot be saved without "
                    "pickle (only the built-in DeepInterestNetwork, BCEWithLogitsLoss and "
                    "attention scorers can); use joblib/pickle for a custom module or scorer."
                ) from None
            not_saved[key] = str(reason)
    fitted = {}
    for key, value in _fitted_attributes(estimator).items():
        try:
            fitted[key] = encoder.encode(value)
        except Unsaveable as reason:
            raise TypeError(f"save_model: the fitted attribute {key}, of step {name!r}, holds "
                            f"{reason}, which cannot be saved without pickle.") from None
    state = {"name": name, "kind": kind, "frozen": frozen, "params": params,
             "not_saved": sorted(not_saved), "fitted": fitted}
    if kind == "classifier":
        weights = {}
        for key, tensor in estimator.module_.state_dict().items():
            values = tensor.detach().cpu().numpy()
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(f"save_model: the weight {key!r} of step {name!r} is NaN or "
                                 "infinite (the model diverged); refit it before saving.")
            weights[key] = encoder.array(values)
        state["weights"] = weights
        state["history"] = [{k: v for k, v in epoch.items() if k != "batches" and plain_json(v)}
                            for epoch in estimator.history_]
    if not_saved:
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(not_saved.items()))
        warnings.warn(
            f"save_model: {sorted(not_saved)} of step {name!r} are not saved ({reasons}). The "
            "loaded model predicts the same, but these settings take their default values "
            "(set them again before training it further).", UserWarning, stacklevel=3,
        )
    return state


def _encode_sklearn_step(name: str, step: object, frozen: bool, arrays: dict,
                         prefix: str) -> dict:
    own: dict[str, np.ndarray] = {}
    state = sklearn_step_state(name, step, own, prefix)
    encoder = Encoder(arrays, prefix)
    return {"name": name, "kind": SKLEARN_KIND, "frozen": frozen, "state": state,
            "arrays": {key[len(prefix):]: encoder.array(values) for key, values in own.items()}}


def save_model(model: object, path: str | os.PathLike) -> None:
    """Save a fitted model to one file that loads without unpickling code.

    Parameters
    ----------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline
        A fitted estimator, or a pipeline of them and scikit-learn's own steps (a
        ColumnTransformer, a scaler, frozen or not: saved with skops, which loads only
        scikit-learn's and numpy's types; needs ``pip install "sklearn-din[skops]"``).
        A step holding anything else is refused with its name. Of sklearn-din's
        estimators every parameter is saved if it is a plain value (numbers, strings,
        None, booleans, tuples, lists, dicts), a device, a
        ``skorch.dataset.ValidSplit`` or a class from a short allow-list (torch's
        optimizers, ``BCEWithLogitsLoss``, ``DeepInterestNetwork``, skorch's
        defaults); others, such as callbacks, are not saved and a warning names
        them. The optimizer's state is not saved.
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
        if type(step) in _KINDS:
            check_is_fitted(step)
            meta_steps.append(_encode_step(name, step, frozen, arrays, f"{i}/"))
        elif isinstance(model, Pipeline):  # scikit-learn's own steps, through skops
            meta_steps.append(_encode_sklearn_step(name, step, frozen, arrays, f"{i}/"))
        else:
            # A search or a calibrated model is not saved whole; a search's model can be.
            hint = (" Save its best_estimator_ (what it predicts with)."
                    if hasattr(step, "best_estimator_") else "")
            raise TypeError(f"save_model: cannot save a {type(step).__name__}; supported: "
                            "SequenceFeatureTransformer, DINClassifier and pipelines of them "
                            f"and scikit-learn's own steps.{hint}")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sklearn_din": __version__,
            "pipeline": isinstance(model, Pipeline), "steps": meta_steps}
    write_model_file(path, meta, arrays)


# ------------------------------------------------------------------ reading
def _expect(condition: bool, fail: Callable[[str], ModelFileError], reason: str) -> None:
    if not condition:
        raise fail(reason)


def _read_steps(meta: dict, reader: ModelFileReader) -> list[_Step]:
    """The steps of a format-2 file, decoded (checked as values, not yet as models)."""
    decoder = Decoder(reader)
    steps = []
    for i, step in enumerate(meta["steps"]):
        where = f"step {i}"
        if isinstance(step, dict) and step.get("kind") == SKLEARN_KIND:
            _expect(set(step) == {"name", "kind", "frozen", "state", "arrays"}
                    and isinstance(step["state"], dict) and isinstance(step["arrays"], dict),
                    reader.error, f"{where} must have exactly the entries arrays, frozen, kind, "
                    "name and state")
            own = {f"{i}/{key}": decoder.array(ref, f"{where} array {key!r}")
                   for key, ref in step["arrays"].items()}
            steps.append(_Step(step["name"], SKLEARN_KIND, step["frozen"], {}, {}, {}, [], [],
                               sklearn_state=step["state"], sklearn_arrays=own, prefix=f"{i}/"))
            continue
        keys = {"name", "kind", "frozen", "params", "not_saved", "fitted"}
        if isinstance(step, dict) and step.get("kind") == "classifier":
            keys |= {"weights", "history"}
        _expect(isinstance(step, dict) and set(step) == keys, reader.error,
                f"{where} must have exactly the entries {sorted(keys)}")
        _expect(isinstance(step["params"], dict) and isinstance(step["fitted"], dict),
                reader.error, f"{where}: malformed parameters or fitted attributes")
        _expect(isinstance(step["not_saved"], list)
                and all(isinstance(k, str) for k in step["not_saved"]), reader.error,
                f"{where}: malformed list of unsaved parameters")
        params = {k: decoder.decode(v, f"{where} parameter {k!r}")
                  for k, v in step["params"].items()}
        for name, value in _ADDED_SINCE_FORMAT_2.get(step["kind"], {}).items():
            if name not in step["not_saved"]:
                params.setdefault(name, value)
        fitted = {k: decoder.decode(v, f"{where} attribute {k!r}")
                  for k, v in step["fitted"].items()}
        weights, history = {}, []
        if step["kind"] == "classifier":
            _expect(isinstance(step["weights"], dict), reader.error, f"{where}: malformed weights")
            weights = {k: decoder.array(v, f"{where} weight {k!r}")
                       for k, v in step["weights"].items()}
            history = step["history"]
        steps.append(_Step(step["name"], step["kind"], step["frozen"], params, fitted, weights,
                           history, step["not_saved"]))
    return steps


def _read_steps_version_1(meta: dict, reader: ModelFileReader) -> list[_Step]:
    """The steps of a file written by sklearn-din 0.1.0, in the form of format 2."""
    steps = []
    for i, step in enumerate(meta["steps"]):
        prefix, state = f"{i}/", step["state"]
        layout_fields = None
        if step["kind"] == SKLEARN_KIND:
            own = ({} if "passthrough" in state else {f"{prefix}skops": reader.array(
                f"{prefix}skops", kind="u")})
            steps.append(_Step(step["name"], SKLEARN_KIND, step.get("frozen", False), {}, {},
                               {}, [], [], sklearn_state=state, sklearn_arrays=own,
                               prefix=prefix))
            continue
        if step["kind"] == "transformer":
            params = {**_VERSION_1_PARAMS["transformer"], **state["params"]}
            params["history_cols"] = tuple(params["history_cols"])
            params["categorical_cols"] = tuple(params["categorical_cols"])
            store = behaviour_store(*(reader.array(f"{prefix}store/{part}")
                                      for part in ("users", "times", "codes")), reader.error)
            numeric = store.times.dtype.kind in "iu"
            fitted = {
                "feature_names_in_": np.asarray(state["feature_names_in"], dtype=object),
                "n_features_in_": len(state["feature_names_in"]),
                "vocabularies_": {c: reader.array(f"{prefix}vocab/{c}")
                                  for c in state["vocabulary_columns"]},
                "time_kind_": state["time_kind"],
                # 0.1.0 did not record whether datetimes had a zone; it accepted both.
                "time_dtype_": (INT64 if numeric else FLOAT64)
                if state["time_kind"] == "numeric" else LEGACY_DATETIME,
                "behaviour_store_": store,
                "n_behaviours_": len(store),
                "recency_unit_": float(state.get("recency_unit", 1.0)),
            }
            weights, history = {}, []
        elif step["kind"] == "classifier":
            params = {**_VERSION_1_PARAMS["classifier"], **state["params"],
                      **state["prefixed_params"]}
            for name in ("attention_units", "hidden_units", "categorical_cols"):
                params[name] = tuple(params[name])
            optimizer = getattr(torch.optim, state["optimizer"], None)
            _expect(isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer),
                    reader.error, f"unknown optimizer {state['optimizer']!r}")
            params["optimizer"] = optimizer
            layout_fields = tuple(state["layout"])
            fitted = {
                "classes_": reader.array(f"{prefix}classes"),
                "layout_": InputLayout(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in state["layout"].items()}),
                "history_vocab_sizes_": tuple(state["history_vocab_sizes"]),
                "sparse_vocab_sizes_": tuple(state["sparse_vocab_sizes"]),
                "n_features_in_": state["n_features_in"],
                "id_frequencies_": [reader.array(f"{prefix}frequency/{t}")
                                    for t in range(state["n_tables"])],
            }
            if state["feature_names_in"] is not None:
                fitted["feature_names_in_"] = np.asarray(state["feature_names_in"], dtype=object)
            weights = {key[len(f"{prefix}weights/"):]: reader.array(key)
                       for key in reader.members() if key.startswith(f"{prefix}weights/")}
            history = state["history"]
        else:
            raise reader.error(f"step {i} has the unknown kind {step['kind']!r}")
        steps.append(_Step(step["name"], step["kind"], step.get("frozen", False), params, fitted,
                           weights, history, [], layout_fields=layout_fields))
    return steps


# ------------------------------------------------------------------ checking
def _check_names(names: object, fail: Callable, what: str) -> list[str]:
    _expect(isinstance(names, np.ndarray) and names.ndim == 1 and names.dtype == object
            and all(isinstance(n, str) for n in names) and len(set(names)) == len(names),
            fail, f"{what} must be distinct column names")
    return list(names)


def _check_vocabulary(values: object, fail: Callable, what: str) -> None:
    _expect(isinstance(values, np.ndarray) and values.ndim == 1 and len(values) > 0
            and (values.dtype.kind in "biufU"
                 or (values.dtype == object and all(isinstance(v, str) for v in values))),
            fail, f"{what} must be a non-empty 1-D array of numbers or strings")
    if values.dtype.kind == "f":
        _expect(bool(np.isfinite(values).all()), fail, f"{what} holds NaN or inf")
    _expect(len(np.unique(values)) == len(values), fail, f"{what} holds duplicates")


def _check_codes(codes: np.ndarray, vocab_size: int, fail: Callable, what: str) -> None:
    if codes.size:
        _expect(int(codes.min()) >= 2 and int(codes.max()) < vocab_size + 2, fail,
                f"{what} holds codes outside the vocabulary")


def _check_transformer(t: SequenceFeatureTransformer, fail: Callable) -> None:
    t._check_params()
    names = _check_names(getattr(t, "feature_names_in_", None), fail, "feature_names_in_")
    _expect(t.n_features_in_ == len(names), fail, "n_features_in_ disagrees with the names")
    missing = [c for c in (*t._vocabulary_cols, t.time_col) if c not in names]
    _expect(not missing, fail, f"the columns {missing} are not among feature_names_in_")
    vocabularies = t.vocabularies_
    _expect(isinstance(vocabularies, dict) and set(vocabularies) == set(t._vocabulary_cols),
            fail, f"vocabularies_ must hold exactly the columns {t._vocabulary_cols}")
    for col, values in vocabularies.items():
        _check_vocabulary(values, fail, f"the vocabulary of {col!r}")
    _expect(t.time_kind_ in ("numeric", "datetime"), fail, "time_kind_ is unknown")
    if not hasattr(t, "time_dtype_"):  # saved from a transformer unpickled from 0.1.0
        t.time_dtype_ = t._fit_time_dtype()
    dtype = t.time_dtype_
    _expect(dtype in (*TIME_DTYPES, LEGACY_DATETIME) and time_kind(dtype) == t.time_kind_,
            fail, f"time_dtype_ {dtype!r} does not match time_kind_ {t.time_kind_!r}")
    store = t.behaviour_store_
    _expect(isinstance(store, BehaviourStore), fail, "behaviour_store_ is not a behaviour store")
    users, times, codes = store.users, store.times, store.behaviour_codes()
    _expect(users.dtype == np.int64 and codes.dtype == np.int32
            and times.dtype == (np.float64 if dtype == FLOAT64 else np.int64)
            and codes.shape == (len(users), len(t.history_cols)), fail,
            "the behaviour arrays have the wrong dtypes or shapes")
    _expect(bool(np.isfinite(times).all()), fail, "the behaviour times hold NaN or inf")
    unit = t.recency_unit_  # the recency buckets' unit: a positive step between times
    _expect(isinstance(unit, int | float) and not isinstance(unit, bool)
            and np.isfinite(unit) and unit > 0, fail, "recency_unit_ must be a positive number")
    _expect(t.n_behaviours_ == len(users), fail, "n_behaviours_ disagrees with the store")
    _check_codes(users, len(vocabularies[t.user_col]), fail, "the behaviour users")
    for f, col in enumerate(t.history_cols):
        _check_codes(codes[:, f], len(vocabularies[col]), fail, f"the behaviours' {col!r}")


def _check_classifier(c: DINClassifier, fail: Callable,
                      layout_fields: tuple[str, ...] | None = None) -> None:
    c._check_param_values()  # a model fit in a torchrun job loads in any process
    classes = c.classes_
    _expect(isinstance(classes, np.ndarray) and classes.shape == (2,)
            and (classes.dtype.kind in "biufU" or classes.dtype == object)
            and classes[0] != classes[1], fail, "classes_ must hold two distinct labels")
    n = c.n_features_in_
    _expect(isinstance(n, int) and not isinstance(n, bool) and n >= 1, fail,
            "n_features_in_ must be a positive int")
    named = hasattr(c, "feature_names_in_")
    if named:
        names = _check_names(c.feature_names_in_, fail, "feature_names_in_")
        _expect(len(names) == n, fail, "n_features_in_ disagrees with feature_names_in_")
    else:
        names = [f"x{i}" for i in range(n)]
    # The layout is what fit derives from the columns and the parameters: derive it again.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = c._layout_for(pd.DataFrame(columns=names), named)
    except ValueError as exc:
        raise fail(f"the columns do not make a layout ({exc})") from None
    if layout_fields is not None:  # format 1: the fields it holds must agree, the rest is new
        _expect(isinstance(c.layout_, InputLayout) and all(
            getattr(c.layout_, f) == getattr(expected, f) for f in layout_fields), fail,
            "layout_ does not match the columns seen in fit")
        c.layout_ = expected
    _expect(c.layout_ == expected, fail, "layout_ does not match the columns seen in fit")
    problem = c._input_state().problem()  # the sizes and counts agree with the layout
    _expect(problem is None, fail, str(problem))
    _expect(isinstance(getattr(c, "do_early_stopping_", False), bool), fail,
            "do_early_stopping_ must be a boolean")
    if "n_iter_no_change_" not in c.__dict__:  # files from before it, when it was the int
        stopped = getattr(c, "do_early_stopping_", False)
        c.n_iter_no_change_ = c.n_iter_no_change if stopped else None
    _expect(_none_or_positive_int(c.n_iter_no_change_), fail,
            "n_iter_no_change_ must be None or a positive int")
    if "weight_averaging_" not in c.__dict__:  # files from before it, never "auto" then
        stopped = getattr(c, "do_early_stopping_", False)
        c.weight_averaging_ = c._averaging_share(0) if stopped else None
    share = c.weight_averaging_
    _expect(share is None or (isinstance(share, float) and 0 < share < 1), fail,
            "weight_averaging_ must be None or a float in (0, 1)")
    c.__dict__.setdefault("refit_epochs_", None)  # files from before it: no refit
    _expect(_none_or_positive_int(c.refit_epochs_), fail,
            "refit_epochs_ must be None or a positive int")
    n_dense = len(c.layout_.dense_cols)
    # Files from before standardize_numeric (which load with it off): no statistics.
    c.__dict__.setdefault("dense_mean_", np.zeros(n_dense))
    c.__dict__.setdefault("dense_scale_", np.ones(n_dense))
    _expect(all(isinstance(a, np.ndarray) and a.shape == (n_dense,) and a.dtype == np.float64
                and bool(np.isfinite(a).all()) for a in (c.dense_mean_, c.dense_scale_))
            and bool((c.dense_scale_ > 0).all()), fail,
            "dense_mean_ and dense_scale_ must hold one finite float64 per numeric column, "
            "the scales positive")


def _none_or_positive_int(value: object) -> bool:
    """An epoch count a fit resolved (patience, refit epochs), or None for none."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and value >= 1)


def _load_weights(c: DINClassifier, weights: dict, fail: Callable) -> None:
    expected = c.module_.state_dict()
    _expect(set(weights) == set(expected), fail,
            f"the weights are not those of the network (missing "
            f"{sorted(set(expected) - set(weights))[:5]}, unexpected "
            f"{sorted(set(weights) - set(expected))[:5]})")
    tensors = {}
    for key, tensor in expected.items():
        values = weights[key]
        _expect(values.shape == tuple(tensor.shape) and _torch_dtype(values) == tensor.dtype,
                fail,
                f"the weight {key!r} has dtype {values.dtype} and shape {values.shape}, the "
                f"network needs {tensor.dtype} {tuple(tensor.shape)}")
        _expect(values.dtype.kind != "f" or bool(np.isfinite(values).all()), fail,
                f"the weight {key!r} holds NaN or inf")
        tensors[key] = torch.from_numpy(np.require(values, requirements=["C", "W"]))
    c.module_.load_state_dict(tensors, strict=True)
    c.module_.to(c.device)


def _torch_dtype(values: np.ndarray) -> torch.dtype | None:
    try:
        return torch.from_numpy(np.zeros(0, dtype=values.dtype)).dtype
    except TypeError:  # strings: no tensor holds them
        return None


def _device_for(saved: object, requested: str | None, fail: Callable) -> object:
    """The device to load a classifier on: the requested one, else the saved one if present."""
    if requested is not None:
        return requested
    try:
        _parse_device(saved)
    except (ValueError, TypeError):
        raise fail(f"device {saved!r} is not a device") from None
    try:
        _check_device(saved)
    except ValueError:
        warnings.warn(f"load: the model was saved on {str(saved)!r}, which this machine does not "
                      "have; loading it on 'cpu'.", UserWarning, stacklevel=4)
        return "cpu"
    return saved


def _build(step: _Step, device: str | None, fail: Callable) -> object:
    """The estimator a decoded step describes, after checking every part of it."""
    if step.kind == SKLEARN_KIND:
        _expect(set(step.sklearn_arrays) <= {f"{step.prefix}skops"}, fail,
                "a scikit-learn step holds arrays other than its skops payload")
        try:
            return load_sklearn_step(step.sklearn_state, step.sklearn_arrays, step.prefix)
        except ImportError:
            raise
        except Exception as exc:  # skops parses the payload: anything can fail in there
            raise fail(f"the scikit-learn step is unreadable ({type(exc).__name__}: {exc})") \
                from None
    cls = _CLASSES[step.kind]
    params = dict(step.params)
    if step.kind == "classifier" and "device" in params:
        params["device"] = _device_for(params["device"], device, fail)
    elif step.kind == "classifier" and device is not None:
        params["device"] = device
    # skorch takes unknown constructor arguments as parameters: a file's must be the
    # estimator's own (or prefixed ones, checked by the estimator).
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    _expect(all("__" in k for k in unknown), fail, f"{cls.__name__} has no parameter(s) {unknown}")
    estimator = cls(**params)
    runtime = _runtime_attributes(estimator)
    for key, value in step.fitted.items():
        _expect(key.isidentifier() and key.endswith("_") and not key.startswith("_")
                and key not in runtime, fail, f"{key!r} is not a fitted attribute")
        setattr(estimator, key, value)
    if step.kind == "transformer":
        _check_transformer(estimator, fail)
        return estimator
    _check_classifier(estimator, fail, step.layout_fields)
    estimator.initialize()
    _load_weights(estimator, step.weights, fail)
    _expect(isinstance(step.history, list)
            and all(isinstance(e, dict) and plain_json(e) for e in step.history), fail,
            "the epoch log is malformed")
    for epoch in step.history:
        estimator.history_.new_epoch()
        for key, value in epoch.items():
            estimator.history_.record(key, value)
    return estimator


def _check_pipeline(steps: list[tuple[str, object]], fail: Callable) -> None:
    names = [name for name, _ in steps]
    _expect(all(isinstance(n, str) and n and "__" not in n for n in names)
            and len(set(names)) == len(names), fail,
            f"the step names {names} must be distinct, non-empty and free of '__'")
    for (name, step), (_, following) in zip(steps, steps[1:], strict=False):
        step = step.estimator if isinstance(step, FrozenEstimator) else step
        following = following.estimator if isinstance(following, FrozenEstimator) else following
        _expect(not isinstance(step, DINClassifier), fail,
                f"step {name!r} is a classifier but not the last step")
        names_in = getattr(following, "feature_names_in_", None)
        if names_in is None or not hasattr(step, "get_feature_names_out"):
            continue  # passthrough, or a step that does not name its columns
        try:
            given = list(step.get_feature_names_out())
        except (AttributeError, TypeError, ValueError):  # scikit-learn steps that cannot say
            continue
        _expect(list(names_in) == given, fail,
                f"the columns step {name!r} makes are not those the next step was fit on")


def load_model(path: str | os.PathLike, *, device: str | None = None) -> object:
    """Load a model written by :func:`save_model`.

    Every part of the file is checked before the model is built: the JSON header's
    entries (types, ranges, the estimators' own parameter checks), each array's
    dtype and shape, and that the parts agree (vocabularies and behaviours, the
    classifier's layout, table sizes and weights, the columns one pipeline step
    makes and the next reads). Only the arrays the header names are read, and none
    may claim more memory than the file backs.

    Parameters
    ----------
    path : str or path-like
        The file.
    device : str or None, default=None
        Device for a classifier ("cpu", "cuda", "cuda:N", "mps"); None keeps the
        saved one (or "cpu", with a warning, when the saved device is not available).

    Returns
    -------
    model : SequenceFeatureTransformer, DINClassifier or Pipeline

    Raises
    ------
    ModelFileError
        The file is truncated, tampered with, inconsistent, of another format, or
        written by a newer release of the format.
    ValueError
        ``device`` is not available on this machine.

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
    if device is not None:
        _check_device(device)  # the caller's mistake: a ValueError, before reading anything
    with ModelFileReader(path) as reader:
        meta = reader.meta()
        _expect(isinstance(meta, dict) and meta.get("format") == FORMAT, reader.error,
                "not an sklearn-din model file")
        version = meta.get("format_version")
        _expect(isinstance(version, int) and not isinstance(version, bool) and version >= 1,
                reader.error, f"format_version {version!r} is not a version")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{reader.path} was saved by sklearn-din {meta.get('sklearn_din')!s} in format "
                f"version {version}; this release ({__version__}) reads up to version "
                f"{FORMAT_VERSION}: upgrade sklearn-din."
            )
        _expect(isinstance(meta.get("pipeline"), bool) and isinstance(meta.get("steps"), list)
                and len(meta["steps"]) >= 1 and (meta["pipeline"] or len(meta["steps"]) == 1),
                reader.error, "malformed list of steps")

        def fail(reason: str) -> ModelFileError:
            return ModelFileError(f"{reader.path} is damaged or inconsistent ({reason}).")

        try:
            read = _read_steps if version == FORMAT_VERSION else _read_steps_version_1
            saved = read(meta, reader)
            if version == FORMAT_VERSION:  # files of 0.1.0 have no digest
                reader.check_digest(meta)
            steps = []
            for step in saved:
                _expect((step.kind in _CLASSES or step.kind == SKLEARN_KIND)
                        and isinstance(step.frozen, bool), fail,
                        f"step kind {step.kind!r} or frozen flag {step.frozen!r} is unknown")
                estimator = _build(step, device, fail)
                steps.append((step.name, FrozenEstimator(estimator) if step.frozen else estimator))
            _check_pipeline(steps, fail)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
                OverflowError) as exc:
            # the estimators' own checks (InvalidParameterError, ...) and torch's
            raise fail(f"{type(exc).__name__}: {exc}") from None
    for step in saved:
        if step.not_saved:
            warnings.warn(
                f"load: step {step.name!r} was saved without {step.not_saved}; they have their "
                "default values. The model predicts as saved, but set them again before "
                "training it further.", UserWarning, stacklevel=2,
            )
    return Pipeline(steps) if meta["pipeline"] else steps[0][1]
