"""Adversarial sweep: bad and edge inputs, each classified by what the package does with it.

Every input falls in one of four outcomes:

- ``right``: what an independent reference says: its result, or a clear refusal (a
  TypeError/ValueError raised by the package's own checks or scikit-learn's parameter
  validation) where no exact answer exists; for edited model files, a ModelFileError or
  predictions identical to the unedited model's;
- ``refused``: a clear refusal where the reference has an answer (strict, not harmful);
- ``obscure``: any other exception (raised inside numpy, pandas, torch, ...);
- ``wrong``: a result that differs from the reference: silent garbage or a leak.

The classes are those of issue 14; the sweep hunts for the rest of each one.

    python benchmarks/reliability_sweep.py          # writes benchmarks/results/reliability_sweep.md
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import sys
import tempfile
import traceback
import warnings
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_din import (
    DINClassifier,
    ModelFileError,
    SequenceFeatureTransformer,
    fit_stream,
    load_model,
    save_model,
)
from sklearn_din._model_file import _member_digest, content_digest
from sklearn_din.datasets import make_interactions, sample_negatives
from sklearn_din.metrics import gauc_score, rela_impr

torch.set_num_threads(1)
warnings.simplefilter("ignore")
RESULTS = Path(__file__).parent / "results" / "reliability_sweep.md"
OURS = ("sklearn_din", os.path.join("sklearn", "utils", "_param_validation.py"),
        os.path.join("sklearn", "utils", "validation.py"))

counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
examples: dict[tuple[str, str], str] = {}


def record(klass: str, outcome: str, what: str) -> None:
    counts[klass][outcome] += 1
    examples.setdefault((klass, outcome), what)
    if outcome != "right" and os.environ.get("SWEEP_VERBOSE"):
        print(f"{klass} ({outcome}): {what}", flush=True)


def attempt(klass: str, what: str, run, reference=None, same=None) -> None:
    """Run ``run()``; compare with ``reference()`` (None: any result is fine; "refused":
    only a clear refusal is right)."""
    expected = None if reference is None else reference()
    try:
        got = run()
    except Exception as error:  # classified below: the point of the sweep
        frame = traceback.extract_tb(error.__traceback__)[-1].filename
        ours = isinstance(error, TypeError | ValueError) and any(p in frame for p in OURS)
        outcome = ("right" if expected == "refused" else "refused") if ours else "obscure"
        record(klass, outcome, f"{what}: {type(error).__name__}: {str(error)[:120]}")
        return
    ok = expected is None or (same(got, expected) if same is not None else got == expected)
    record(klass, ok if isinstance(ok, str) else "right" if ok else "wrong", what)


# ----------------------------------------------------------------- time columns
T = 1_700_000_000_000_000_000


def time_columns() -> dict[str, pd.Series]:
    naive = pd.Series(pd.Timestamp("2021-03-28 00:30") + pd.to_timedelta([0, 1, 2, 3], unit="h"))
    aware = naive.dt.tz_localize("UTC")
    columns = {
        "int64": pd.Series([1, 2, 3, 4]), "int64-ns": pd.Series([T, T + 100, T + 200, T + 256]),
        "int64-max": pd.Series([2**63 - 4, 2**63 - 3, 2**63 - 2, 2**63 - 1]),
        "int64-min": pd.Series([-(2**63), -(2**63) + 1, 0, 1]),
        "int32": pd.Series([1, 2, 3, 4], dtype="int32"), "int8": pd.Series([1, 2, 3, 4],
                                                                          dtype="int8"),
        "uint64": pd.Series([1, 2, 3, 4], dtype="uint64"),
        "uint64-big": pd.Series([2**63 - 10, 2**63 + 10, 2**64 - 2, 2**64 - 1], dtype="uint64"),
        "float64": pd.Series([0.5, 1.5, 2.5, 3.5]), "float64-ns": pd.Series(
            [float(T), float(T + 256), float(T + 512), float(T + 768)]),
        "float32": pd.Series([0.5, 1.5, 2.5, 3.5], dtype="float32"),
        "float16": pd.Series([0.5, 1.5, 2.5, 3.5], dtype="float16"),
        "longdouble": pd.Series(np.array([0.5, 1.5, 2.5, 3.5], dtype=np.longdouble)),
        "float-inf": pd.Series([0.5, np.inf, 2.5, 3.5]),
        "Int64": pd.Series([1, 2, 3, 4], dtype="Int64"),
        "UInt64-big": pd.Series([2**63 + 1, 2**63 + 2, 2**63 + 3, 2**63 + 4], dtype="UInt64"),
        "Float64": pd.Series([0.5, 1.5, 2.5, 3.5], dtype="Float64"),
        "int64[pyarrow]": pd.Series([1, 2, 3, 4], dtype="int64[pyarrow]"),
        "uint64[pyarrow]-big": pd.Series([2**63 + 1, 2**63 + 2, 2**63 + 3, 2**63 + 4],
                                         dtype="uint64[pyarrow]"),
        "double[pyarrow]": pd.Series([0.5, 1.5, 2.5, 3.5], dtype="double[pyarrow]"),
        "object-int": pd.Series([1, 2, 3, 4], dtype=object),
        "object-bigint": pd.Series([2**64 + 1, 2**64 + 2, 1, 2], dtype=object),
        "object-mixed-num": pd.Series([1, 2.5, 3, 4.5], dtype=object),
        "category-int": pd.Series([1, 2, 3, 4]).astype("category"),
        "category-str": naive.dt.strftime("%Y-%m-%d %H:%M").astype("category"),
        "bool": pd.Series([True, False, True, False]),
        "complex": pd.Series([1 + 0j, 2 + 0j, 3 + 0j, 4 + 0j]),
        "timedelta": pd.Series(pd.to_timedelta([1, 2, 3, 4], unit="s")),
        "datetime64[ns]": naive, "datetime64[s]": naive.astype("datetime64[s]"),
        "datetime64[ms]": naive.astype("datetime64[ms]"),
        "datetime-far": pd.Series(np.array(["2020-01-01", "9999-12-31", "2021-01-01",
                                            "2022-01-01"], dtype="datetime64[s]")),
        "tz-UTC": aware, "tz-Tokyo": aware.dt.tz_convert("Asia/Tokyo"),
        "tz-Paris-dst": aware.dt.tz_convert("Europe/Paris"),
        "period-h": naive.dt.to_period("h"),
        "timestamp[ns][pyarrow]": naive.astype("timestamp[ns][pyarrow]"),
        "timestamp[s,tz][pyarrow]": aware.astype("timestamp[s, tz=UTC][pyarrow]"),
        "timestamp[ms,tz=Tokyo][pyarrow]": aware.dt.tz_convert("Asia/Tokyo").astype(
            "timestamp[ms, tz=Asia/Tokyo][pyarrow]"),
        "date32[pyarrow]": pd.Series([pd.Timestamp(f"2020-01-0{d}").date() for d in range(1, 5)],
                                     dtype="date32[pyarrow]"),
        "str-naive": naive.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object),
        "str-zoned": aware.dt.tz_convert("Europe/Paris").map(lambda s: s.isoformat()),
        "str-mixed-zone": pd.Series(["2021-03-28T00:30", "2021-03-28T01:30+02:00",
                                     "2021-03-28T02:30", "2021-03-28T03:30Z"]),
        "str-garbage": pd.Series(["a", "b", "c", "d"]),
        "str-dates": pd.Series(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"],
                               dtype="string"),
        "objects-datetime": pd.Series(list(naive.dt.to_pydatetime()), dtype=object),
        "objects-mixed-aware": pd.Series([naive[0].to_pydatetime(), aware[1].to_pydatetime(),
                                          naive[2].to_pydatetime(), naive[3].to_pydatetime()],
                                         dtype=object),
    }
    return columns


def exact(column: pd.Series) -> tuple[str, list] | None:
    """(family, exact values) by Python's own reading, None where there is no exact order."""
    values = column.astype(object).tolist() if not isinstance(column.dtype, pd.PeriodDtype) \
        else [p.start_time for p in column]
    try:
        if all(isinstance(v, bool) for v in values) or any(isinstance(v, complex | pd.Timedelta)
                                                           for v in values):
            return None
        if all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
               for v in values):
            if any(np.isinf(v) for v in values):
                return None
            return "numbers", [Fraction(*v.as_integer_ratio()) for v in values]
        stamps = [pd.Timestamp(v) for v in values]
        zones = {s.tzinfo is not None for s in stamps}
        if len(zones) > 1:
            return None
        return ("aware" if zones.pop() else "naive"), [s.value for s in stamps]
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return None


def reference_lengths(fit_exact, query_exact):
    return [sum(1 for t in fit_exact if t < q) for q in query_exact]


def sweep_times() -> None:
    columns = time_columns()
    for name, column in columns.items():  # one column: fit_transform on one user
        log = pd.DataFrame({"user_id": 1, "item_id": range(4), "cate_id": 1, "time": column})
        truth = exact(column)
        attempt("time dtypes (fit)", name,
                lambda log=log: SequenceFeatureTransformer().fit_transform(log)["hist_len"]
                .tolist(),
                (lambda: "refused") if truth is None
                else (lambda t=truth: reference_lengths(t[1], t[1])))
    for fit_name, fit_col in columns.items():  # every pair: fit on one, transform another
        fit_log = pd.DataFrame({"user_id": 1, "item_id": range(4), "cate_id": 1,
                                "time": fit_col})
        try:
            t = SequenceFeatureTransformer().fit(fit_log)
        except (TypeError, ValueError):
            continue
        for name, column in columns.items():
            query = pd.DataFrame({"user_id": 1, "item_id": range(4), "cate_id": 1,
                                  "time": column})
            a, b = exact(fit_col), exact(column)
            if a is None or b is None or a[0] != b[0]:
                def reference():
                    return ("refused")  # no exact answer: must be refused
            else:
                def reference(a=a, b=b):
                    return (reference_lengths(a[1], b[1]))
            attempt("time kind mixes (fit x transform)", f"{fit_name} x {name}",
                    lambda t=t, q=query: t.transform(q)["hist_len"].tolist(), reference)


# ----------------------------------------------------------------------- ids
def id_columns() -> dict[str, pd.Series]:
    ids = [5, 6, 5, 7]
    return {
        "int64": pd.Series(ids), "int32": pd.Series(ids, dtype="int32"),
        "uint8": pd.Series(ids, dtype="uint8"), "float64": pd.Series(ids, dtype=float),
        "float-frac": pd.Series([5.5, 6, 5, 7]), "Int64": pd.Series(ids, dtype="Int64"),
        "int64[pyarrow]": pd.Series(ids, dtype="int64[pyarrow]"),
        "object-int": pd.Series(ids, dtype=object), "category-int": pd.Series(ids).astype(
            "category"),
        "str": pd.Series([str(i) for i in ids]), "object-str": pd.Series([str(i) for i in ids],
                                                                         dtype=object),
        "category-str": pd.Series([str(i) for i in ids]).astype("category"),
        "string[pyarrow]": pd.Series([str(i) for i in ids], dtype="string[pyarrow]"),
        "bool": pd.Series([True, False, True, True]),
        "datetime": pd.Series(pd.to_datetime(ids, unit="D")),
        "mixed": pd.Series([5, "6", 5, 7], dtype=object),
    }


def family(column: pd.Series) -> str | None:
    from sklearn_din._validation import value_kind
    return value_kind(column)


def sweep_ids() -> None:
    columns = id_columns()
    for fit_name, fit_col in columns.items():
        log = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": fit_col, "cate_id": 1,
                            "time": [1, 2, 3, 4]})
        try:
            t = SequenceFeatureTransformer().fit(log)
        except (TypeError, ValueError):
            continue
        vocabulary = list(t.vocabularies_["item_id"])
        for name, column in columns.items():
            query = log.assign(item_id=column)
            a, b = family(fit_col), family(column)
            if a is not None and b is not None and a != b:
                def reference():
                    return ("refused")  # all unknown: a changed dtype, not new ids
            else:
                def reference(c=column, v=vocabulary):
                    return ([next((i + 2 for i, w in enumerate(v) if x == w), 1) for x in c])
            attempt("id dtype changes (transform)", f"{fit_name} x {name}",
                    lambda t=t, q=query: t.transform(q)["item_id"].tolist(), reference)
            attempt("id dtype changes (partial_fit)", f"{fit_name} x {name}",
                    lambda q=query, log=log: len(SequenceFeatureTransformer().fit(log)
                                                 .partial_fit(q).vocabularies_["item_id"]),
                    (lambda: "refused") if a is not None and b is not None and a != b
                    else None)


# --------------------------------------------------------------- classifier inputs
def classifier_frame():
    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=3),
                            random_state=3)
    X = SequenceFeatureTransformer(max_len=4).fit_transform(rows.drop(columns="label"),
                                                            rows["label"])
    return X, rows["label"].to_numpy()


SMALL = dict(embed_dim=4, attention_units=(4,), hidden_units=(4,), max_epochs=1, verbose=0,
             random_state=0)


def sweep_classifier() -> None:
    X, y = classifier_frame()
    fitted = DINClassifier(**SMALL).fit(X.assign(price=0.5), y)
    for value in (1e39, -1e39, 3.4e38, 1e30, 1.7e18, 1.7e9, 1e7, 2e6, 5e3, 1e-40, np.inf,
                  -np.inf, np.nan):
        finite_small = np.isfinite(value) and abs(value) <= 1e6
        in_float32 = np.isfinite(value) and abs(value) <= np.finfo(np.float32).max
        attempt("numeric values (predict)", repr(value),
                lambda v=value: bool(np.isfinite(fitted.predict_proba(X.assign(price=v))).all()),
                (lambda: True) if in_float32 else (lambda: "refused"))
        # standardize_numeric=True (the default) standardises any value float32 holds;
        # False keeps the refusal beyond 1e6.
        for standardize, expected in ((True, in_float32), (False, finite_small)):
            attempt("numeric values (fit)" if standardize else
                    "numeric values (fit, standardize_numeric=False)", repr(value),
                    lambda v=value, s=standardize: bool(np.isfinite(DINClassifier(
                        **SMALL, standardize_numeric=s).fit(
                        X.assign(price=np.linspace(-1, 1, len(X)) * v), y).predict_proba(
                        X.assign(price=0.0))).all()),
                    (lambda: True) if expected else (lambda: "refused"))
    bad_params = {
        "embed_dim": [0, -1, 2.5, "8"], "attention_units": [(), (-4,), (0,), (2.5,), "8"],
        "hidden_units": [(-4,), (0,), (True,), "8"], "activation": ["tanh", None],
        "attention_normalization": ["sigmoid", 1], "pooling": ["max", None],
        "dropout": [1.0, -0.1, "0"], "batch_norm": [1, "yes"],
        "history_vocab_sizes": [(2, 2), (10**6,), "x"], "sparse_vocab_sizes": [(1,), (5, 5)],
        "n_dense": [3, -1], "sparse_gradients": [True], "id_frequencies": [[np.ones(3)]],
        "embed_dims": [4], "typo": [1],
    }
    for name, values in bad_params.items():
        for value in values:
            attempt("prefixed module parameters", f"module__{name}={value!r}",
                    lambda n=name, v=value: DINClassifier(**SMALL, **{f"module__{n}": v})
                    .fit(X, y), lambda: "refused")
    for name, value in [("optimizer__lr", -1.0), ("optimizer__weight_decay", -1.0),
                        ("optimizer__betas", (2.0, 0.9)), ("optimizer__typo", 1),
                        ("criterion__reduction", "bogus"), ("criterion__typo", 1),
                        ("iterator_train__batch_size", 8), ("iterator_valid__shuffle", True),
                        ("callbacks__print_log__typo", 1), ("callbacks__nosuch__x", 1),
                        ("threshold", 1.5), ("threshold", "0.5"), ("warm_start", "no"),
                        ("compile", 1), ("use_caching", "yes"), ("torch_load_kwargs", 1),
                        ("predict_nonlinearity", "softmax")]:
        attempt("other prefixed and skorch parameters", f"{name}={value!r}",
                lambda n=name, v=value: DINClassifier(**SMALL, **{n: v}).fit(X, y),
                lambda: "refused")
    for column in ("user_id", "item_id", "cate_id", "hist_item_id_0", "hist_cate_id_3"):
        for value in (10**5, 10**7, 10**9, 2**31, 2**40, 2**62):
            X2 = X.astype({column: np.int64})
            X2.loc[X2.index[0], column] = value
            table_rows = value + 1
            allowed = table_rows <= 1 << 22
            attempt("raw ids (embedding tables)", f"{column}={value}",
                    lambda X2=X2: DINClassifier(**SMALL, user_embedding=True).fit(X2, y)
                    is not None,
                    (lambda: True) if allowed else (lambda: "refused"))
    for max_len in (0, 1, 50, 10_000, 10_001, 100_000, 10**12, 2.5, True):
        log = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "cate_id": 1, "time": [1, 2]})
        ok = isinstance(max_len, int) and not isinstance(max_len, bool) and 1 <= max_len <= 10_000
        attempt("max_len", repr(max_len),
                lambda m=max_len, log=log: SequenceFeatureTransformer(max_len=m)
                .fit_transform(log)["hist_len"].tolist(),
                (lambda: [0, 1]) if ok else (lambda: "refused"))
    from scipy.sparse import csr_matrix
    expected = fitted.predict_proba(X.assign(price=0.5))
    for name, make in [("ndarray", lambda Z: Z.to_numpy()), ("list", lambda Z: Z.to_numpy()
                                                             .tolist()),
                       ("int-columns", lambda Z: Z.set_axis(range(Z.shape[1]), axis=1)),
                       ("float32 array", lambda Z: Z.to_numpy(np.float32)),
                       ("sparse", lambda Z: csr_matrix(Z.to_numpy())),
                       ("one column short", lambda Z: Z.to_numpy()[:, :-1]),
                       ("1-d", lambda Z: Z.to_numpy()[0]),
                       ("reordered DataFrame", lambda Z: Z[Z.columns[::-1]])]:
        data = make(X.assign(price=0.5))
        reference = (lambda: True) if name in ("ndarray", "list", "int-columns",
                                               "float32 array") else (lambda: "refused")
        attempt("inputs without names (predict)", name,
                lambda d=data: bool(np.allclose(fitted.predict_proba(d), expected, atol=1e-6)),
                reference)
    rows = X.assign(label=y)
    half = len(rows) // 2
    for name, second in [("str labels", lambda d: d.assign(label=d.label.map({0: "a", 1: "b"}))),
                         ("bool labels", lambda d: d.assign(label=d.label.astype(bool))),
                         ("float labels", lambda d: d.assign(label=d.label.astype(float))),
                         ("mixed labels", lambda d: d.assign(label=d.label.astype(object).where(
                             d.label == 0, "1"))),
                         ("third label", lambda d: d.assign(label=d.label + 1)),
                         ("NaN label", lambda d: d.assign(label=d.label.astype(float).where(
                             d.index > d.index[0]))),
                         ("str ids", lambda d: d.assign(item_id=d.item_id.astype(str))),
                         ("float ids", lambda d: d.assign(item_id=d.item_id.astype(float))),
                         ("missing column", lambda d: d.drop(columns="cate_id")),
                         ("huge numeric", lambda d: d.assign(price=1.7e9)),
                         ("raw id", lambda d: d.assign(item_id=10**9))]:
        chunks = [rows.iloc[:half].assign(price=0.5), second(rows.iloc[half:].assign(price=0.5))]
        ok = name in ("bool labels", "float labels", "float ids", "huge numeric")
        attempt("fit_stream chunks", name,
                lambda c=chunks: fit_stream(DINClassifier(**SMALL), c) is not None,
                (lambda: True) if ok else (lambda: "refused"))


# ------------------------------------------------------------------- serving
def sweep_serving() -> None:
    from sklearn.pipeline import make_pipeline

    from sklearn_din import score_candidates

    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=3),
                            random_state=3)
    raw = rows.drop(columns="label")
    model = make_pipeline(SequenceFeatureTransformer(max_len=4), DINClassifier(**SMALL)).fit(
        raw, rows["label"])
    user = int(raw["user_id"].iloc[0])
    now = int(raw["time"].max()) + 1
    candidates = raw[["item_id", "cate_id"]].drop_duplicates().head(5)
    expected = score_candidates(model, user, candidates, time=now)

    def same(got, want):
        return bool(np.allclose(got, want, atol=1e-6))

    for name, kwargs, ok in [
        ("int user, int time", dict(user=user, time=now), True),
        ("numpy int user", dict(user=np.int64(user), time=now), True),
        ("float time", dict(user=user, time=float(now)), True),
        ("str user", dict(user=str(user), time=now), False),
        ("datetime time", dict(user=user, time=pd.Timestamp("2020-01-01")), False),
        ("uint64 time >= 2**63", dict(user=user, time=np.uint64(2**63 + 1)), False),
        ("bool time", dict(user=user, time=True), False),
        ("str candidates", dict(user=user, time=now, candidates=candidates.astype(str)), False),
        ("new visitor with a str id and a history",
         dict(user="session-1", time=now, history=raw.iloc[:3][["item_id", "cate_id", "time"]]),
         None),
        ("history with datetime times",
         dict(user=-1, time=now, history=raw.iloc[:3][["item_id", "cate_id"]].assign(
             time=pd.Timestamp("2020-01-01"))), False),
        ("history with fractional times",
         dict(user=-1, time=now, history=raw.iloc[:3][["item_id", "cate_id", "time"]].assign(
             time=lambda d: d["time"] + 0.5)), False),
    ]:
        args = {"candidates": candidates, **kwargs}
        attempt("score_candidates requests", name,
                lambda a=args: score_candidates(model, a.pop("user"), a.pop("candidates"), **a),
                None if ok is None else (lambda: expected) if ok else (lambda: "refused"),
                same if ok else None)


# -------------------------------------------------------------- metrics, helpers
def sweep_metrics_and_helpers() -> None:
    y, s, g = [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [1, 1, 2, 2]
    for name, args in [("nan score", (y, [np.nan, 0.9, 0.2, 0.8], g)),
                       ("inf score", (y, [np.inf, 0.9, 0.2, 0.8], g)),
                       ("None group", (y, s, [1, 1, None, None])),
                       ("NaN group", (y, s, [1.0, 1.0, np.nan, np.nan])),
                       ("NaN label", ([0, 1, np.nan, 1], s, g)), ("str label", (["a"] * 4, s, g)),
                       ("3 labels", ([0, 1, 2, 1], s, g)), ("empty", ([], [], [])),
                       ("lengths", (y, s[:3], g)), ("2-d scores", (y, np.ones((4, 2)), g)),
                       ("str scores", (y, ["a"] * 4, g)),
                       ("mixed groups", (y, s, [1, 1, "1", "1"]))]:
        ok = name == "mixed groups"
        attempt("gauc_score arguments", name, lambda a=args: gauc_score(a[0], a[1], groups=a[2]),
                (lambda: 1.0) if ok else (lambda: "refused"))
    for args in [(0.7, float("nan")), (float("nan"), 0.6), (2.0, 0.6), (0.7, -1.0), ("x", 0.6),
                 (0.7, 0.5)]:
        attempt("rela_impr arguments", repr(args), lambda a=args: rela_impr(*a),
                lambda: "refused")
    bad = {"n_users": [0, -1, 2.5, float("nan"), "3"], "n_items": [0, 2.5, None],
           "n_categories": [0, 2.5, 10**6], "mean_events": [1.5, float("nan"), float("inf"), "x"],
           "recency_weight": [-0.1, 1.1, float("nan")], "interest_weight": [-1, float("nan")],
           "random_state": ["seed", 2.5]}
    for name, values in bad.items():
        for value in values:
            attempt("make_interactions arguments", f"{name}={value!r}",
                    lambda n=name, v=value: make_interactions(**{"n_users": 5, n: v}),
                    lambda: "refused")
    log = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 7], "cate_id": 1,
                        "time": [1, 2, 3, 4]})
    for name, kwargs in [("n_negatives=0", {"n_negatives": 0}),
                         ("n_negatives=1.5", {"n_negatives": 1.5}),
                         ("user_col=3", {"user_col": 3}), ("label_col=time", {"label_col": "time"}),
                         ("attributes=item", {"item_attribute_cols": ["item_id"]}),
                         ("attributes=str", {"item_attribute_cols": "cate_id"}),
                         ("random_state=x", {"random_state": "x"})]:
        attempt("sample_negatives arguments", name,
                lambda k=kwargs: sample_negatives(log, **k), lambda: "refused")
    for name, frame in [("mixed users", log.assign(user_id=[1, 1, "1", "1"])),
                        ("mixed items", log.assign(item_id=[5, "5", 6, 7])),
                        ("categorical users", log.assign(user_id=log.user_id.astype("category")))]:
        attempt("sample_negatives logs", name,
                lambda f=frame: int(sample_negatives(f, random_state=0)["label"].sum()),
                lambda: 4)


# ----------------------------------------------------------------- model files
def sweep_model_files() -> None:
    X, y = classifier_frame()
    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=3),
                            random_state=3)
    from sklearn.pipeline import make_pipeline

    raw = rows.drop(columns="label")
    model = make_pipeline(SequenceFeatureTransformer(max_len=4), DINClassifier(**SMALL)).fit(
        raw, rows["label"])
    expected = model.predict_proba(raw)
    folder = Path(tempfile.mkdtemp())
    save_model(model, folder / "m.npz")
    with zipfile.ZipFile(folder / "m.npz") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    meta = json.loads(str(np.load(io.BytesIO(members["meta.npy"]))))

    def npy(array):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()

    def signed(edited: dict) -> dict:
        """The edit with its header's digest made to match, as a deliberate editor would."""
        try:
            header = json.loads(str(np.load(io.BytesIO(edited["meta.npy"]))))
        except (KeyError, ValueError, TypeError, EOFError, SyntaxError, MemoryError):
            return edited  # the header itself is broken: nothing to sign
        keys = set(re.findall(r'"key": "([^"]+)"', json.dumps(header)))
        digests = {}
        for key in keys:
            try:
                digests[key] = _member_digest(key, np.load(io.BytesIO(edited[f"{key}.npy"])))
            except (KeyError, ValueError, TypeError, EOFError, SyntaxError, MemoryError):
                pass
        if isinstance(header, dict):
            header = {**header, "digest": content_digest(header, digests)}
        return {**edited, "meta.npy": npy(np.asarray(json.dumps(header)))}

    def load(edited: dict, deflate=(), sign=False):
        path = folder / "e.npz"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in (signed(edited) if sign else edited).items():
                archive.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflate
                                 else zipfile.ZIP_STORED)
        try:
            loaded = load_model(path)
        except ModelFileError:
            return "refused"
        # any other exception is classified by attempt(): the contract allows none
        proba = loaded.predict_proba(raw)
        if np.allclose(proba, expected, rtol=1e-6, atol=1e-9):
            return "identical"
        return "changed" if np.isfinite(proba).all() else "NaN"

    def attempt_both(klass: str, what: str, edited: dict, deflate=()) -> None:
        # as edited: the digest no longer matches; signed again: every other check applies
        attempt(f"model file: {klass} (as edited)", what,
                lambda: load(edited, deflate), _refused_or_identical, _ok_file)
        attempt(f"model file: {klass} (signed again)", what,
                lambda: load(edited, deflate, sign=True), _refused_or_identical, _ok_signed)

    def paths(node, path=()):
        yield path
        children = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else []
        for key, value in children:
            yield from paths(value, (*path, key))

    replacements = [None, True, -1, 0, 3, 1e300, float("nan"), "x", [], {}, {"tuple": []}]
    for path in [p for p in paths(meta) if p]:
        for value in [*replacements, "DELETE"]:
            edited_meta = json.loads(json.dumps(meta))
            node = edited_meta
            for key in path[:-1]:
                node = node[key]
            if value == "DELETE":
                if isinstance(node, list):
                    continue
                del node[path[-1]]
            else:
                node[path[-1]] = value
            attempt_both("JSON fields", "/".join(map(str, path)) + f"={value!r}",
                         {**members, "meta.npy": npy(np.asarray(json.dumps(edited_meta)))})
    for name, data in members.items():
        stream = io.BytesIO(data)
        np.lib.format.read_magic(stream)
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        payload = data[stream.tell():]
        variants = {"shape+1": (tuple(s + 1 for s in shape) or (1,), dtype.str),
                    "shape()": ((), dtype.str), "shape 10**13": ((10**13,), dtype.str),
                    "dtype<f8": (shape, "<f8"), "dtype<i4": (shape, "<i4"),
                    "dtype|b1": (shape, "|b1"), "dtype<U2": (shape, "<U2"),
                    "dtype|O": (shape, "|O")}
        for label, (new_shape, descr) in variants.items():
            buffer = io.BytesIO()
            np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                          "shape": new_shape})
            attempt_both("array headers", f"{name} {label}",
                         {**members, name: buffer.getvalue() + payload})
        for delta in (-len(data), -9, -1, 1, 8, 4096):
            cut = data[: len(data) + delta] if delta < 0 else data + b"\0" * delta
            attempt_both("member sizes", f"{name} {delta:+d} bytes", {**members, name: cut})
        attempt_both("members", f"drop {name}", {k: v for k, v in members.items() if k != name})
    attempt_both("members", "junk 256 MB deflated",
                 {**members, "junk.npy": npy(np.zeros(256 << 20, np.uint8))},
                 deflate=("junk.npy",))
    for device in ("cuda", "cuda:3", "mps", "banana", "cpu:0", "CPU", "cpu"):
        usable = device in ("cpu", "cpu:0") or (device.startswith("cuda")
                                               and torch.cuda.device_count() > 3)
        attempt("load_model devices", device,
                lambda d=device: load_model(folder / "m.npz", device=d) is not None,
                (lambda: True) if usable else (lambda: "refused"))


def _refused_or_identical():
    return True


def _ok_file(got, _expected):
    return got in ("identical", "refused")


def _ok_signed(got, _expected):
    """A signed edit may also give another working model: "changed" (not a defect)."""
    return "changed" if got == "changed" else got in ("identical", "refused")


def main() -> int:
    sweep_times()
    sweep_ids()
    sweep_classifier()
    sweep_serving()
    sweep_metrics_and_helpers()
    sweep_model_files()
    outcomes = ("right", "refused", "obscure", "wrong", "changed")
    lines = ["# Reliability sweep", "",
             "`python benchmarks/reliability_sweep.py` (torch threads: 1). Outcomes: `right` = "
             "what an independent reference says: its result, or a clear refusal (a "
             "TypeError/ValueError raised by the package's or scikit-learn's parameter "
             "checks) where no exact answer exists, and for edited model files a "
             "`ModelFileError` or predictions identical to the unedited model's; `refused` = "
             "a clear refusal where the reference has an answer; `obscure` = any other "
             "exception; `wrong` = a result other than the reference; `changed` (edited "
             "model files signed again with a matching digest, as a deliberate editor would) = "
             "a working model other than the saved one (an edit of a free value, such as "
             "`attention_normalization`: nothing in the file can tell it apart).", "",
             "| class | inputs | " + " | ".join(outcomes) + " |",
             "|---|---:|" + "---:|" * len(outcomes)]
    total = collections.Counter()
    for klass, counter in counts.items():
        total.update(counter)
        lines.append(f"| {klass} | {sum(counter.values())} | "
                     + " | ".join(str(counter[o]) for o in outcomes) + " |")
    lines.append(f"| **all** | {sum(total.values())} | "
                 + " | ".join(str(total[o]) for o in outcomes) + " |")
    lines += ["", "First example of each obscure, wrong or changed outcome:", ""]
    bad = [(k, o, w) for (k, o), w in examples.items() if o in ("obscure", "wrong")]
    changed = [(k, o, w) for (k, o), w in examples.items() if o == "changed"]
    lines += [f"- {k} ({o}): {w}" for k, o, w in bad + changed] or ["- none"]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
