"""Parameters and fitted attributes as JSON (and arrays), and back, without pickle.

What a model file holds is derived from the estimator itself: every parameter of
``get_params()`` and every fitted attribute is encoded here, so a parameter or
attribute added to an estimator is saved without a list to keep up to date. A value
is encoded only if it can be rebuilt from data alone: numbers, strings, booleans,
None, tuples, lists, dicts, numeric/str arrays, devices, the package's own fitted
structures, and classes named on an allow-list (a file never names code to import).

Every JSON object in the encoding is a one-key tag (``{"tuple": [...]}``,
``{"array": ...}``, ...), so decoding is unambiguous and strict: anything else is a
damaged file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import DataLoader

from ._behaviour_store import BehaviourStore
from ._layout import InputLayout
from ._model_file import ModelFileError, ModelFileReader
from ._network import DeepInterestNetwork, DotProductScorer, LocalActivationUnit

# The classes a parameter may name. Optimizers: any class of torch.optim.
_CLASSES: dict[str, type] = {
    "sklearn_din.DeepInterestNetwork": DeepInterestNetwork,
    "sklearn_din.LocalActivationUnit": LocalActivationUnit,
    "sklearn_din.DotProductScorer": DotProductScorer,
    "torch.nn.BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss,
    "torch.utils.data.DataLoader": DataLoader,
    "skorch.dataset.Dataset": Dataset,
}
_OPTIMIZERS = "torch.optim."


def _class_name(cls: type) -> str | None:
    for name, known in _CLASSES.items():
        if cls is known:
            return name
    if (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
            and getattr(torch.optim, cls.__name__, None) is cls):
        return _OPTIMIZERS + cls.__name__
    return None


def _class(name: str) -> type | None:
    if name in _CLASSES:
        return _CLASSES[name]
    if name.startswith(_OPTIMIZERS):
        cls = getattr(torch.optim, name[len(_OPTIMIZERS):], None)
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
            return cls
    return None


class Unsaveable(TypeError):
    """A value that cannot be rebuilt from a file without pickle."""


def plain_array(values: object, what: str = "an array") -> np.ndarray:
    """``values`` as an array numpy stores without pickle: numbers, booleans or str."""
    values = np.asarray(values)
    if values.dtype == object:
        if not all(isinstance(v, str) for v in values.flat):
            types = sorted({type(v).__name__ for v in values.flat})
            raise Unsaveable(f"{what} of {types} (only numbers, booleans and str arrays are "
                             "saved without pickle)")
        values = values.astype(str)
    if values.dtype.kind not in "biufU":
        raise Unsaveable(f"{what} of dtype {values.dtype}")
    return values


class Encoder:
    """Encodes values as JSON, putting arrays in ``arrays`` under keys ``prefix + n``."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        self.arrays = arrays
        self.prefix = prefix

    def array(self, values: np.ndarray) -> dict:
        as_object = np.asarray(values).dtype == object
        values = plain_array(values)
        key = f"{self.prefix}{len(self.arrays)}"
        self.arrays[key] = np.require(values, requirements="C")  # (ascontiguousarray: >= 1-d)
        node = {"key": key, "dtype": values.dtype.str, "shape": list(values.shape)}
        if as_object:
            node["object"] = True
        return {"array": node}

    def encode(self, value: object) -> object:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return int(value) if isinstance(value, int) else float(value)
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return value.item()
        if isinstance(value, tuple):
            return {"tuple": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return {"list": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise Unsaveable("a dict with keys other than str")
            return {"dict": {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, torch.device):
            return {"device": str(value)}
        if isinstance(value, type):
            name = _class_name(value)
            if name is None:
                raise Unsaveable(f"the class {value.__module__}.{value.__qualname__}, which is "
                                 "not on the allow-list of classes a file may name")
            return {"class": name}
        if isinstance(value, InputLayout):
            return {"layout": {f.name: self.encode(getattr(value, f.name))
                               for f in dataclasses.fields(value)}}
        if isinstance(value, BehaviourStore):
            return {"behaviours": {"users": self.array(value.users),
                                   "times": self.array(value.times),
                                   "codes": self.array(value.behaviour_codes())}}
        if type(value) is ValidSplit and (value.random_state is None
                                          or isinstance(value.random_state, int)):
            return {"valid_split": {"cv": self.encode(value.cv),
                                    "stratified": bool(value.stratified),
                                    "random_state": value.random_state}}
        raise Unsaveable(f"a {type(value).__module__}.{type(value).__qualname__}")


class Decoder:
    """Decodes what :class:`Encoder` wrote, reading arrays from ``reader``; strict."""

    def __init__(self, reader: ModelFileReader) -> None:
        self.reader = reader
        self.read: set[str] = set()  # each member is one array: read at most once

    def fail(self, what: str, reason: str) -> ModelFileError:
        return self.reader.error(f"{what}: {reason}")

    def array(self, node: object, what: str) -> np.ndarray:
        """The array an ``{"array": ...}`` node refers to."""
        if not (isinstance(node, dict) and set(node) == {"array"}):
            raise self.fail(what, "not an array")
        return self._array(node["array"], what)

    def _array(self, node: object, what: str) -> np.ndarray:
        if not (isinstance(node, dict) and set(node) <= {"key", "dtype", "shape", "object"}
                and {"key", "dtype", "shape"} <= set(node)):
            raise self.fail(what, "not an array reference")
        key, dtype, shape = node["key"], node["dtype"], node["shape"]
        if not (isinstance(key, str) and key != "meta" and isinstance(dtype, str)
                and isinstance(shape, list) and all(_natural(n) for n in shape)):
            raise self.fail(what, "a malformed array reference")
        try:
            expected = np.dtype(dtype)
        except (TypeError, ValueError):
            raise self.fail(what, f"unknown dtype {dtype!r}") from None
        if key in self.read:
            raise self.fail(what, f"member {key!r} is referred to twice")
        self.read.add(key)
        values = self.reader.array(key, dtype=expected.str, shape=tuple(shape))
        if node.get("object", False) is True:
            return values.astype(object)
        if "object" in node:
            raise self.fail(what, "a malformed array reference")
        return values

    def decode(self, node: object, what: str) -> object:
        if node is None or isinstance(node, bool | int | str):
            return node
        if isinstance(node, float):
            return node
        if not (isinstance(node, dict) and len(node) == 1):
            raise self.fail(what, f"unexpected value {_short(node)}")
        (tag, body), = node.items()
        handler = _TAGS.get(tag)
        if handler is None:
            raise self.fail(what, f"unknown tag {tag!r}")
        return handler(self, body, what)

    def _sequence(self, body: object, what: str) -> list:
        if not isinstance(body, list):
            raise self.fail(what, "not a list")
        return [self.decode(v, f"{what}[{i}]") for i, v in enumerate(body)]

    def _dict(self, body: object, what: str) -> dict:
        if not isinstance(body, dict):
            raise self.fail(what, "not a dict")
        return {k: self.decode(v, f"{what}[{k!r}]") for k, v in body.items()}

    def _device(self, body: object, what: str) -> torch.device:
        if not isinstance(body, str):
            raise self.fail(what, "not a device name")
        try:
            return torch.device(body)
        except (RuntimeError, ValueError):
            raise self.fail(what, f"unknown device {body!r}") from None

    def _class(self, body: object, what: str) -> type:
        cls = _class(body) if isinstance(body, str) else None
        if cls is None:
            raise self.fail(what, f"the class {_short(body)} is not on the allow-list")
        return cls

    def _layout(self, body: object, what: str) -> InputLayout:
        names = [f.name for f in dataclasses.fields(InputLayout)]
        if not isinstance(body, dict) or sorted(body) != sorted(names):
            raise self.fail(what, f"a layout needs exactly the fields {names}")
        fields = {k: self.decode(v, f"{what}.{k}") for k, v in body.items()}
        return InputLayout(**fields)

    def _behaviours(self, body: object, what: str) -> BehaviourStore:
        if not isinstance(body, dict) or sorted(body) != ["codes", "times", "users"]:
            raise self.fail(what, "behaviours need users, times and codes")
        users, times, codes = (self.array(body[k], f"{what}.{k}")
                               for k in ("users", "times", "codes"))
        return behaviour_store(users, times, codes, lambda reason: self.fail(what, reason))

    def _valid_split(self, body: object, what: str) -> ValidSplit:
        if not isinstance(body, dict) or sorted(body) != ["cv", "random_state", "stratified"]:
            raise self.fail(what, "a ValidSplit needs cv, stratified and random_state")
        cv = self.decode(body["cv"], f"{what}.cv")
        if not (isinstance(body["stratified"], bool)
                and (body["random_state"] is None or isinstance(body["random_state"], int))):
            raise self.fail(what, "a malformed ValidSplit")
        try:
            return ValidSplit(cv=cv, stratified=body["stratified"],
                              random_state=body["random_state"])
        except (TypeError, ValueError) as exc:
            raise self.fail(what, f"a ValidSplit refused by skorch ({exc})") from None


_TAGS: dict[str, Callable] = {
    "tuple": lambda d, body, what: tuple(d._sequence(body, what)),
    "list": Decoder._sequence,
    "dict": Decoder._dict,
    "array": Decoder._array,
    "device": Decoder._device,
    "class": Decoder._class,
    "layout": Decoder._layout,
    "behaviours": Decoder._behaviours,
    "valid_split": Decoder._valid_split,
}


def _natural(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plain_json(value: object) -> bool:
    """Whether ``value`` is made of JSON's own types only (as the epoch log is)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    return False


def behaviour_store(users: np.ndarray, times: np.ndarray, codes: np.ndarray,
                    fail: Callable[[str], ModelFileError]) -> BehaviourStore:
    """The store of these arrays, which must describe the same behaviours."""
    n = len(users) if users.ndim == 1 else -1
    if not (users.dtype.kind in "iu" and times.ndim == 1 and len(times) == n
            and times.dtype.kind in "iuf" and codes.ndim == 2 and codes.shape[0] == n
            and codes.dtype.kind in "iu"):
        raise fail(f"users {users.dtype}{users.shape}, times {times.dtype}{times.shape} and "
                   f"codes {codes.dtype}{codes.shape} do not describe the same behaviours")
    return BehaviourStore.from_arrays(users, times, codes)
