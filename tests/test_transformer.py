"""Behaviour of SequenceFeatureTransformer: point-in-time histories, encoding, API, errors.

The central property is checked against a brute-force pure-Python reference: each
row's history holds only its user's behaviours strictly earlier than the row's time
(equal times excluded; among equal earlier times the later-arriving row is the more
recent), most recent first, the ``max_len`` most recent kept, padded with 0.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_din import SequenceFeatureTransformer

AMAZON_SAMPLE = Path("/work/shared/data/amazon-electronics-sample/amazon_electronics_sample.csv")
PAD, UNK = 0, 1
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no slow "explain" phase
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- helpers
def reference_transform(
    fit_X: pd.DataFrame,
    y,
    X: pd.DataFrame,
    *,
    fit_times: list,
    times: list,
    max_len: int,
    user_col: str = "user_id",
    item_col: str = "item_id",
    history_cols: tuple[str, ...] = ("item_id", "cate_id"),
) -> tuple[list[str], list[list[int]]]:
    """Brute-force, loop-per-row version of the transform (int columns only).

    ``fit_times`` / ``times`` are the rows' times as plain comparable Python values.
    Returns the integer column names and one list of ints per row of ``X``.
    """
    attributes = [c for c in history_cols if c != item_col]
    id_cols = [user_col, item_col, *attributes]
    vocab = {c: sorted(set(fit_X[c].tolist())) for c in id_cols}

    def code(col, value):
        return vocab[col].index(value) + 2 if value in vocab[col] else UNK

    fit_rows = fit_X.to_dict("records")
    behaviours = [
        (fit_times[i], i, row)
        for i, row in enumerate(fit_rows)
        if y is None or int(y[i]) == 1
    ]
    names = [*id_cols]
    for col in history_cols:
        names += [f"hist_{col}_{k}" for k in range(max_len)]
    names.append("hist_len")

    out = []
    for row, t in zip(X.to_dict("records"), times, strict=True):
        earlier = [b for b in behaviours if b[2][user_col] == row[user_col] and b[0] < t]
        # most recent first: later time first, then later arrival first
        earlier.sort(key=lambda b: (b[0], b[1]), reverse=True)
        kept = earlier[:max_len]
        values = [code(c, row[c]) for c in id_cols]
        for col in history_cols:
            codes = [code(col, b[2][col]) for b in kept]
            values += codes + [PAD] * (max_len - len(codes))
        values.append(len(kept))
        out.append(values)
    return names, out


def decode(transformer: SequenceFeatureTransformer, out: pd.DataFrame) -> pd.DataFrame:
    """Map every id and history code back to the original value (pad/unknown marked)."""
    decoded = {}
    for name in out.columns:
        if name == "hist_len" or name not in transformer.get_feature_names_out():
            decoded[name] = out[name].tolist()
            continue
        col = name
        if name.startswith("hist_"):
            col = name[len("hist_"):].rsplit("_", 1)[0]
        if col not in transformer.vocabularies_:
            decoded[name] = out[name].tolist()
            continue
        vocab = transformer.vocabularies_[col]
        decoded[name] = [
            "<pad>" if c == PAD else "<unk>" if c == UNK else vocab[c - 2]
            for c in out[name].tolist()
        ]
    return pd.DataFrame(decoded, index=out.index)


def small_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "item_id": ["a", "b", "c", "d", "a"],
            "cate_id": ["x", "y", "x", "z", "x"],
            "time": [1, 2, 2, 3, 1],
            "price": [1.5, 2.5, 3.5, 4.5, 5.5],
        }
    )


def hist(out: pd.DataFrame, feature: str, max_len: int) -> list[list[int]]:
    cols = [f"hist_{feature}_{k}" for k in range(max_len)]
    return out[cols].to_numpy().tolist()


def encode_times(raw: list[int], kind: str):
    """Small integer times -> a time column of the given kind (same order)."""
    raw = [int(t) for t in raw]
    if kind == "int":
        return pd.Series(raw, dtype="int64")
    if kind == "float":
        return pd.Series([0.5 * t - 1.25 for t in raw], dtype="float64")
    stamps = pd.Timestamp("2021-03-04 05:06:07") + pd.to_timedelta(raw, unit="h")
    if kind == "datetime":
        return pd.Series(stamps)
    if kind == "tz":
        return pd.Series(stamps.tz_localize("UTC").tz_convert("Asia/Kolkata"))
    if kind == "str":
        return pd.Series([s.isoformat() for s in stamps], dtype=object)
    raise AssertionError(kind)


# --------------------------------------------------------------- reference (hypothesis)
@st.composite
def fit_and_transform_frames(draw):
    id_kind = draw(st.sampled_from(["int", "str"]))
    time_kind = draw(st.sampled_from(["int", "float", "datetime", "tz", "str"]))
    n_fit = draw(st.integers(1, 25))
    same_frame = draw(st.booleans())
    n_tr = n_fit if same_frame else draw(st.integers(1, 20))

    def ids(prefix, hi, n):
        values = draw(st.lists(st.integers(0, hi), min_size=n, max_size=n))
        return values if id_kind == "int" else [f"{prefix}{v}" for v in values]

    fit_raw_t = draw(st.lists(st.integers(0, 5), min_size=n_fit, max_size=n_fit))
    fit_X = pd.DataFrame(
        {
            "user_id": ids("u", 3, n_fit),
            "item_id": ids("i", 6, n_fit),
            "cate_id": ids("c", 3, n_fit),
            "time": encode_times(fit_raw_t, time_kind),
            "extra": draw(st.lists(st.floats(-5, 5), min_size=n_fit, max_size=n_fit)),
        }
    )
    if same_frame:
        X, raw_t = fit_X, fit_raw_t
    else:
        raw_t = draw(st.lists(st.integers(0, 6), min_size=n_tr, max_size=n_tr))
        X = pd.DataFrame(  # users 4-5, items 7-8, cates 4-5 are unseen in fit
            {
                "user_id": ids("u", 5, n_tr),
                "item_id": ids("i", 8, n_tr),
                "cate_id": ids("c", 5, n_tr),
                "time": encode_times(raw_t, time_kind),
                "extra": draw(st.lists(st.floats(-5, 5), min_size=n_tr, max_size=n_tr)),
            }
        )
        perm = draw(st.permutations(range(n_tr)))
        X.index = pd.Index([f"r{p}" for p in perm])
    y = None
    if draw(st.booleans()):
        y = draw(st.lists(st.integers(0, 1), min_size=n_fit, max_size=n_fit))
    max_len = draw(st.integers(1, 6))
    return fit_X, fit_raw_t, y, X, raw_t, max_len


@HYPOTHESIS
@given(case=fit_and_transform_frames())
def test_transform_matches_brute_force_reference(case):
    fit_X, fit_raw_t, y, X, raw_t, max_len = case
    fit_copy, X_copy = fit_X.copy(), X.copy()
    t = SequenceFeatureTransformer(max_len=max_len, recency=False).fit(fit_X, y)
    out = t.transform(X)

    names, expected = reference_transform(
        fit_X, y, X, fit_times=fit_raw_t, times=raw_t, max_len=max_len
    )
    assert list(out.columns) == [*names, "extra"]
    assert list(out.columns) == list(t.get_feature_names_out())
    assert out.index.equals(X.index)
    assert out[names].to_numpy().tolist() == expected
    for name in names:
        assert out[name].dtype.kind == "i", name
    pd.testing.assert_series_equal(out["extra"], X["extra"])
    for col in ("user_id", "item_id", "cate_id"):
        assert t.vocabularies_[col].tolist() == sorted(set(fit_X[col].tolist()))
    assert t.n_behaviours_ == (len(fit_X) if y is None else sum(y))
    # inputs are not modified
    pd.testing.assert_frame_equal(fit_X, fit_copy)
    pd.testing.assert_frame_equal(X, X_copy)


@st.composite
def two_batches(draw):
    def batch(n, t_lo, t_hi):
        return pd.DataFrame(
            {
                "user_id": draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)),
                "item_id": draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)),
                "cate_id": draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)),
                "time": draw(st.lists(st.integers(t_lo, t_hi), min_size=n, max_size=n)),
            }
        )

    later = draw(st.booleans())
    first = batch(draw(st.integers(1, 15)), 0, 5)
    second = batch(draw(st.integers(1, 15)), 5 if later else 0, 10 if later else 5)
    with_y = draw(st.booleans())
    y1 = draw(st.lists(st.integers(0, 1), min_size=len(first), max_size=len(first)))
    y2 = draw(st.lists(st.integers(0, 1), min_size=len(second), max_size=len(second)))
    return first, second, (y1 if with_y else None), (y2 if with_y else None), draw(
        st.integers(1, 5)
    )


@HYPOTHESIS
@given(case=two_batches())
def test_partial_fit_equals_fit_on_concatenated_log(case):
    first, second, y1, y2, max_len = case
    inc = SequenceFeatureTransformer(max_len=max_len, recency=False).fit(first, y1)
    old_vocab = {c: v.copy() for c, v in inc.vocabularies_.items()}
    inc.partial_fit(second, y2)

    both = pd.concat([first, second], ignore_index=True)
    y_both = None if y1 is None else y1 + y2
    full = SequenceFeatureTransformer(max_len=max_len, recency=False).fit(both, y_both)

    for col, vocab in old_vocab.items():
        # known values keep their codes, new values are appended (sorted) after them
        assert inc.vocabularies_[col][: len(vocab)].tolist() == vocab.tolist()
        new = sorted(set(second[col]) - set(first[col]))
        assert inc.vocabularies_[col][len(vocab):].tolist() == new
    assert inc.n_behaviours_ == full.n_behaviours_
    assert inc.n_behaviours_ == (len(both) if y_both is None else sum(y_both))

    query = pd.concat([both, both.assign(user_id=99, item_id=77)], ignore_index=True)
    query = pd.concat([query, both.assign(time=both["time"] + 1)], ignore_index=True)
    pd.testing.assert_frame_equal(
        decode(inc, inc.transform(query)), decode(full, full.transform(query))
    )


@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 64])
def test_medium_random_log_matches_reference_across_chunks(monkeypatch, chunk_rows):
    # transform gathers histories in chunks of rows: every chunk boundary must be seamless
    if chunk_rows is not None:
        import sklearn_din._behaviour_store as store_module

        # chunks are sized in cells (rows x max_len); max_len is 5 here
        monkeypatch.setattr(store_module, "_CHUNK_CELLS", chunk_rows * 5)
    rng = np.random.default_rng(0)
    n = 400
    fit_X = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "item_id": rng.integers(0, 80, n),
            "cate_id": rng.integers(0, 10, n),
            "time": rng.integers(0, 40, n),
        }
    )
    y = rng.integers(0, 2, n)
    X = fit_X.sample(frac=1.0, random_state=1).assign(time=lambda d: d["time"] + 1)
    X = pd.concat([X, X.head(20).assign(user_id=99)])
    t = SequenceFeatureTransformer(max_len=5).fit(fit_X, y)
    names, expected = reference_transform(
        fit_X, y, X, fit_times=fit_X["time"].tolist(), times=X["time"].tolist(), max_len=5
    )
    out = t.transform(X)
    assert out[names].to_numpy().tolist() == expected
    assert out["hist_len"].max() == 5


# -------------------------------------------------------------- ordering, ties, sizes
def test_ties_are_excluded_and_later_arrival_is_more_recent():
    # fit rows deliberately not in time order: c and b share time 2, b arrives later
    fit_X = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u"],
            "item_id": ["d", "c", "a", "b"],
            "cate_id": ["z", "x", "x", "y"],
            "time": [3.0, 2.0, 1.0, 2.0],
        }
    )
    t = SequenceFeatureTransformer(max_len=4).fit(fit_X)
    a, b, c, d = 2, 3, 4, 5  # sorted vocabulary a, b, c, d -> codes 2..5
    query = pd.DataFrame(
        {
            "user_id": ["u"] * 6,
            "item_id": ["a"] * 6,
            "cate_id": ["x"] * 6,
            "time": [1.0, 2.0, 2.5, 3.0, 100.0, 0.0],
        }
    )
    out = t.transform(query)
    assert hist(out, "item_id", 4) == [
        [0, 0, 0, 0],  # time 1: its own time excluded
        [a, 0, 0, 0],  # time 2: c and b (equal time) excluded
        [b, c, a, 0],  # b arrived after c at the same time -> more recent
        [b, c, a, 0],  # time 3: d (equal time) excluded
        [d, b, c, a],
        [0, 0, 0, 0],
    ]
    assert out["hist_len"].tolist() == [0, 1, 3, 3, 4, 0]
    x, y, z = 2, 3, 4
    assert hist(out, "cate_id", 4)[4] == [z, y, x, x]


def test_most_recent_first_and_truncated_to_max_len():
    n = 10
    fit_X = pd.DataFrame(
        {
            "user_id": [7] * n,
            "item_id": [100 + k for k in range(n)],
            "cate_id": [k % 3 for k in range(n)],
            "time": list(range(n)),
        }
    ).sample(frac=1.0, random_state=0)  # arrival order must not matter with distinct times
    t = SequenceFeatureTransformer(max_len=3).fit(fit_X)
    query = pd.DataFrame(
        {"user_id": [7, 7, 7], "item_id": [100] * 3, "cate_id": [0] * 3, "time": [10, 2, 0]}
    )
    out = t.transform(query)
    code = {100 + k: k + 2 for k in range(n)}
    assert hist(out, "item_id", 3) == [
        [code[109], code[108], code[107]],
        [code[101], code[100], 0],
        [0, 0, 0],
    ]
    assert out["hist_len"].tolist() == [3, 2, 0]
    assert [c for c in out.columns if c.startswith("hist_item")] == [
        "hist_item_id_0", "hist_item_id_1", "hist_item_id_2"
    ]


def test_histories_are_per_user():
    fit_X = pd.DataFrame(
        {
            "user_id": [1, 2, 1, 2],
            "item_id": [10, 20, 11, 21],
            "cate_id": [0, 0, 0, 0],
            "time": [1, 1, 2, 2],
        }
    )
    out = SequenceFeatureTransformer(max_len=3).fit(fit_X).transform(fit_X.assign(time=5))
    item = {10: 2, 11: 3, 20: 4, 21: 5}
    assert hist(out, "item_id", 3) == [
        [item[11], item[10], 0],
        [item[21], item[20], 0],
        [item[11], item[10], 0],
        [item[21], item[20], 0],
    ]


def test_unseen_users_items_and_attributes():
    t = SequenceFeatureTransformer(max_len=2).fit(small_log())
    query = pd.DataFrame(
        {
            "user_id": ["nobody", "u", "u"],
            "item_id": ["a", "new-item", "b"],
            "cate_id": ["x", "x", "new-cate"],
            "time": [99, 99, 99],
            "price": [0.0, 0.0, 0.0],
        }
    )
    out = t.transform(query)
    assert out["user_id"].tolist() == [UNK, 2, 2]
    assert out["item_id"].tolist() == [2, UNK, 3]
    assert out["cate_id"].tolist() == [2, 2, UNK]
    # unseen user: empty history; known user: full history whatever the candidate is
    assert hist(out, "item_id", 2) == [[0, 0], [5, 4], [5, 4]]
    assert out["hist_len"].tolist() == [0, 2, 2]


def test_codes_follow_vocabularies():
    t = SequenceFeatureTransformer().fit(small_log())
    assert t.vocabularies_["user_id"].tolist() == ["u", "v"]
    assert t.vocabularies_["item_id"].tolist() == ["a", "b", "c", "d"]
    assert t.vocabularies_["cate_id"].tolist() == ["x", "y", "z"]
    out = t.transform(small_log())
    assert out["item_id"].tolist() == [2, 3, 4, 5, 2]
    assert out["cate_id"].tolist() == [2, 3, 2, 4, 2]
    assert out["user_id"].tolist() == [2, 2, 2, 2, 3]
    assert set(t.vocabularies_) == {"user_id", "item_id", "cate_id"}


def test_vocabulary_includes_negative_rows_but_histories_only_positives():
    log = small_log()
    y = [1, 0, 1, 1, 0]
    t = SequenceFeatureTransformer(max_len=3).fit(log, y)
    assert t.n_behaviours_ == 3
    assert t.vocabularies_["item_id"].tolist() == ["a", "b", "c", "d"]  # b is a negative
    out = t.transform(log)
    # row d (time 3) sees c and a, not the negative b
    assert hist(out, "item_id", 3)[3] == [4, 2, 0]
    assert out["item_id"].tolist() == [2, 3, 4, 5, 2]


@pytest.mark.parametrize(
    "y",
    [
        [1, 0, 1, 1, 0],
        np.array([1, 0, 1, 1, 0]),
        pd.Series([1, 0, 1, 1, 0], index=[9, 8, 7, 6, 5]),
        [True, False, True, True, False],
        [1.0, 0.0, 1.0, 1.0, 0.0],
        [3, -5, 3, 3, -5],  # two labels: the larger one is the positive
    ],
    ids=["list", "array", "series-other-index", "bool", "float", "ints-larger-positive"],
)
def test_y_forms_select_the_same_positive_rows(y):
    t = SequenceFeatureTransformer(max_len=3).fit(small_log(), y)
    ref = SequenceFeatureTransformer(max_len=3).fit(small_log(), [1, 0, 1, 1, 0])
    assert t.n_behaviours_ == 3
    pd.testing.assert_frame_equal(t.transform(small_log()), ref.transform(small_log()))


def test_two_string_labels_positive_is_the_larger_label():
    # "yes" > "no": rows labelled "yes" are the clicks stored as behaviours
    y = ["yes", "no", "yes", "yes", "no"]
    t = SequenceFeatureTransformer(max_len=3).fit(small_log(), y)
    ref = SequenceFeatureTransformer(max_len=3).fit(small_log(), [1, 0, 1, 1, 0])
    pd.testing.assert_frame_equal(t.transform(small_log()), ref.transform(small_log()))
    # and "click" < "skip": here the larger label "skip" counts as positive
    y2 = ["click", "skip", "click", "click", "skip"]
    t2 = SequenceFeatureTransformer(max_len=3).fit(small_log(), y2)
    assert t2.n_behaviours_ == 2


@pytest.mark.parametrize("y", [[1] * 5, [0] * 5, [True] * 5])
def test_single_label_zero_or_one_is_accepted(y):
    t = SequenceFeatureTransformer(max_len=2).fit(small_log(), y)
    assert t.n_behaviours_ == sum(y)
    out = t.transform(small_log())
    if sum(y) == 0:
        assert (out["hist_len"] == 0).all()
        assert (out.filter(like="hist_").to_numpy() == 0).all()


def test_fit_without_y_stores_every_row_and_refit_forgets():
    t = SequenceFeatureTransformer(max_len=2).fit(small_log())
    assert t.n_behaviours_ == 5
    other = pd.DataFrame(
        {"user_id": ["w"], "item_id": ["q"], "cate_id": ["k"], "time": [1], "price": [0.0]}
    )
    t.fit(other)
    fresh = SequenceFeatureTransformer(max_len=2).fit(other)
    assert t.n_behaviours_ == 1
    assert {c: v.tolist() for c, v in t.vocabularies_.items()} == {
        c: v.tolist() for c, v in fresh.vocabularies_.items()
    }
    pd.testing.assert_frame_equal(t.transform(small_log()), fresh.transform(small_log()))
    assert (t.transform(small_log())["hist_len"] == 0).all()


# ------------------------------------------------------------ rows, index, passthrough
def test_row_order_and_non_default_index_are_kept():
    log = small_log()
    t = SequenceFeatureTransformer(max_len=2).fit(log)
    base = t.transform(log)
    perm = [3, 0, 4, 2, 1]
    shuffled = log.iloc[perm].copy()
    shuffled.index = ["e", "b", "z", "a", "q"]
    out = t.transform(shuffled)
    assert list(out.index) == ["e", "b", "z", "a", "q"]
    assert out.to_numpy().tolist() == base.iloc[perm].to_numpy().tolist()


def test_duplicated_index_is_kept():
    log = small_log()
    log.index = [0, 0, 1, 1, 1]
    out = SequenceFeatureTransformer(max_len=2).fit_transform(log)
    assert list(out.index) == [0, 0, 1, 1, 1]
    assert out["price"].tolist() == log["price"].tolist()
    assert out["hist_len"].tolist() == [0, 1, 1, 2, 0]


def test_passthrough_columns_unchanged_and_time_consumed():
    log = small_log().assign(
        note=["p", "q", "r", "s", "t"],
        when=pd.to_datetime([f"2020-01-0{d}" for d in range(1, 6)]),
        flag=[True, False, True, False, True],
    )
    t = SequenceFeatureTransformer(max_len=2).fit(log)
    out = t.transform(log)
    assert "time" not in out.columns
    assert list(out.columns[-4:]) == ["price", "note", "when", "flag"]
    for col in ("price", "note", "when", "flag"):
        pd.testing.assert_series_equal(out[col], log[col])


def test_transform_accepts_reordered_columns():
    log = small_log()
    t = SequenceFeatureTransformer(max_len=2).fit(log)
    reordered = log[["price", "time", "cate_id", "user_id", "item_id"]]
    pd.testing.assert_frame_equal(t.transform(reordered), t.transform(log))


def test_custom_column_names_and_history_order():
    log = pd.DataFrame(
        {
            "shop": ["s1", "s2", "s1"],
            "uid": [5, 5, 6],
            "ts": [10, 20, 10],
            "iid": ["x", "y", "x"],
            "brand": ["B", "A", "B"],
        }
    )
    t = SequenceFeatureTransformer(
        user_col="uid", item_col="iid", time_col="ts", history_cols=("shop", "iid", "brand"),
        max_len=2, recency=False,
    ).fit(log)
    out = t.transform(log)
    assert list(out.columns) == [
        "user_id", "iid", "shop", "brand",  # the user under the name the classifier reads
        "hist_shop_0", "hist_shop_1",
        "hist_iid_0", "hist_iid_1",
        "hist_brand_0", "hist_brand_1",
        "hist_len",
    ]
    assert out.loc[1, ["hist_shop_0", "hist_iid_0", "hist_brand_0", "hist_len"]].tolist() == [
        2, 2, 3, 1
    ]
    assert list(t.get_feature_names_out()) == list(out.columns)


# ------------------------------------------------------------------------ time kinds
@pytest.mark.parametrize("kind", ["int", "float", "datetime", "tz", "str"])
def test_time_kinds_give_identical_histories(kind):
    raw = [3, 1, 2, 2, 0, 3, 1]
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 2],
            "item_id": [1, 2, 3, 4, 5, 6, 7],
            "cate_id": [1, 1, 2, 2, 3, 3, 1],
        }
    )
    expected = SequenceFeatureTransformer(max_len=3).fit_transform(log.assign(time=raw))
    got = SequenceFeatureTransformer(max_len=3).fit_transform(
        log.assign(time=encode_times(raw, kind))
    )
    pd.testing.assert_frame_equal(got, expected)


def test_time_kinds_are_recorded():
    log = small_log()
    assert SequenceFeatureTransformer().fit(log).time_kind_ == "numeric"
    assert SequenceFeatureTransformer().fit(log.assign(time=log.time * 0.5)).time_kind_ == (
        "numeric"
    )
    for kind in ("datetime", "tz", "str"):
        t = SequenceFeatureTransformer().fit(log.assign(time=encode_times(log.time, kind)))
        assert t.time_kind_ == "datetime"


def test_tz_aware_times_compare_as_instants():
    # 01:00 at +02:00 is 23:00 UTC the day before: earlier than 00:00 UTC
    log = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": ["early", "late"],
            "cate_id": [0, 0],
            "time": ["2020-01-01T01:00:00+02:00", "2020-01-01T00:00:00+00:00"],
        }
    )
    out = SequenceFeatureTransformer(max_len=1).fit_transform(log)
    assert out["hist_len"].tolist() == [0, 1]
    assert out["hist_item_id_0"].tolist() == [0, 2]  # "late" row sees "early"


def test_tz_aware_column_across_dst_and_zones_compares_instants():
    # Paris leaves DST on 2020-10-25: 02:30 CEST (00:30 UTC) precedes 02:10 CET (01:10 UTC)
    # although its wall-clock time is later
    utc = pd.to_datetime(["2020-10-25 00:30", "2020-10-25 01:10"]).tz_localize("UTC")
    log = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": ["first", "second"],
            "cate_id": [0, 0],
            "time": pd.Series(utc.tz_convert("Europe/Paris")),
        }
    )
    assert log["time"].dt.strftime("%H:%M").tolist() == ["02:30", "02:10"]
    t = SequenceFeatureTransformer(max_len=2)
    out = t.fit_transform(log)
    assert out["hist_len"].tolist() == [0, 1]
    assert out["hist_item_id_0"].tolist() == [0, 2]
    # the same instants in another zone give the same output
    pd.testing.assert_frame_equal(
        t.transform(log.assign(time=log["time"].dt.tz_convert("America/New_York"))), out
    )
    # naive times are not instants: compared with aware ones they are refused, as by pandas
    with pytest.raises(TypeError, match="tz-naive datetimes but tz-aware"):
        t.transform(log.assign(time=pd.Series(utc.tz_localize(None))))


def test_int_fit_then_float_transform_is_allowed():
    log = small_log()
    t = SequenceFeatureTransformer(max_len=3).fit(log)
    out = t.transform(log.assign(time=[1.5, 1.5, 2.0, 2.0001, 1.0]))
    assert out["hist_len"].tolist() == [1, 1, 1, 3, 0]


def test_datetime_fit_then_string_transform_is_the_same_kind():
    log = small_log()
    dt = log.assign(time=encode_times(log.time, "datetime"))
    t = SequenceFeatureTransformer(max_len=3).fit(dt)
    pd.testing.assert_frame_equal(
        t.transform(log.assign(time=encode_times(log.time, "str"))), t.transform(dt)
    )


@pytest.mark.parametrize(
    "fit_kind, transform_kind",
    [("int", "datetime"), ("float", "str"), ("datetime", "int"), ("tz", "float")],
)
def test_time_kind_mismatch_raises_type_error(fit_kind, transform_kind):
    log = small_log()
    t = SequenceFeatureTransformer().fit(log.assign(time=encode_times(log.time, fit_kind)))
    other = log.assign(time=encode_times(log.time, transform_kind))
    with pytest.raises(TypeError, match="'time'"):
        t.transform(other)
    with pytest.raises(TypeError, match="'time'"):
        t.partial_fit(other)


def test_far_future_datetimes_are_not_silently_wrapped():
    # A sentinel date such as 9999-12-31 (beyond datetime64[ns]) must either be ordered
    # correctly or rejected; it must never be taken for a past date (future leak).
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "item_id": ["a", "future", "c"],
            "cate_id": [0, 0, 0],
            "time": ["2020-01-01", "9999-12-31", "2021-01-01"],
        }
    )
    t = SequenceFeatureTransformer(max_len=3)
    try:
        out = t.fit_transform(log)
    except ValueError as exc:
        assert "'time'" in str(exc)
        return
    future = 2 + t.vocabularies_["item_id"].tolist().index("future")
    assert out["hist_len"].tolist() == [0, 2, 1]
    assert future not in out.loc[[0, 2]].filter(like="hist_item_id").to_numpy()


# ----------------------------------------------------------------------- partial_fit
def test_partial_fit_adds_behaviours_and_vocabulary():
    t = SequenceFeatureTransformer(max_len=3).fit(small_log())
    before = {c: v.tolist() for c, v in t.vocabularies_.items()}
    new = pd.DataFrame(
        {
            "user_id": ["w", "u"],
            "item_id": ["b", "zz"],
            "cate_id": ["y", "new"],
            "time": [5, 5],
            "price": [0.0, 0.0],
        }
    )
    assert t.partial_fit(new) is t
    assert t.n_behaviours_ == 7
    assert t.vocabularies_["user_id"].tolist() == [*before["user_id"], "w"]
    assert t.vocabularies_["item_id"].tolist() == [*before["item_id"], "zz"]
    assert t.vocabularies_["cate_id"].tolist() == [*before["cate_id"], "new"]
    out = t.transform(
        pd.DataFrame(
            {
                "user_id": ["u", "w"],
                "item_id": ["a", "zz"],
                "cate_id": ["x", "new"],
                "time": [6, 6],
                "price": [0.0, 0.0],
            }
        )
    )
    assert out["item_id"].tolist() == [2, 6]  # old code kept, new code after the old ones
    assert out["user_id"].tolist() == [2, 4]
    assert hist(out, "item_id", 3) == [[6, 5, 4], [3, 0, 0]]
    assert hist(out, "cate_id", 3) == [[5, 4, 2], [3, 0, 0]]


def test_partial_fit_same_time_counts_as_later_arrival():
    log = pd.DataFrame({"user_id": [1], "item_id": ["a"], "cate_id": [0], "time": [5]})
    t = SequenceFeatureTransformer(max_len=2).fit(log)
    t.partial_fit(log.assign(item_id="b"))
    out = t.transform(log.assign(time=6))
    assert hist(out, "item_id", 2) == [[3, 2]]  # b (added later) is the most recent


def test_partial_fit_on_unfitted_is_fit():
    log = small_log()
    a = SequenceFeatureTransformer(max_len=2).partial_fit(log, [1, 0, 1, 1, 0])
    b = SequenceFeatureTransformer(max_len=2).fit(log, [1, 0, 1, 1, 0])
    pd.testing.assert_frame_equal(a.transform(log), b.transform(log))
    assert a.n_behaviours_ == b.n_behaviours_ == 3


def test_partial_fit_rejects_different_columns():
    t = SequenceFeatureTransformer().fit(small_log())
    with pytest.raises(ValueError, match="price"):
        t.partial_fit(small_log().drop(columns="price"))


def test_failed_partial_fit_leaves_the_transformer_unchanged():
    log = small_log()
    t = SequenceFeatureTransformer(max_len=2).fit(log)
    vocab = {c: v.tolist() for c, v in t.vocabularies_.items()}
    before = t.transform(log.assign(item_id="brand-new"))
    bad = log.assign(item_id="brand-new")
    with pytest.raises(ValueError, match="binary"):
        t.partial_fit(bad, [0, 1, 2, 0, 1])
    with pytest.raises(TypeError, match="'time'"):
        t.partial_fit(bad.assign(time=encode_times(bad.time, "datetime")))
    assert {c: v.tolist() for c, v in t.vocabularies_.items()} == vocab
    assert t.n_behaviours_ == 5
    pd.testing.assert_frame_equal(t.transform(log.assign(item_id="brand-new")), before)


def test_failed_refit_does_not_mix_old_and_new_state():
    first = small_log()
    t = SequenceFeatureTransformer(max_len=2).fit(first)
    before = t.transform(first)
    second = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["0", "1"],
            "cate_id": ["0", "1"],
            "time": [1, 2],
            "price": [0.0, 0.0],
        }
    )
    # a refit that fails (y has three values) must not leave the new vocabulary paired
    # with the old behaviours: either still the old fit, or not fitted at all
    with pytest.raises(ValueError, match="binary"):
        t.fit(pd.concat([second, second.iloc[:1]]), [0, 1, 2])
    try:
        after = t.transform(first)
    except NotFittedError:
        return
    pd.testing.assert_frame_equal(after, before)


# ---------------------------------------------------- set_output, names, fit_transform
def test_set_output_pandas_and_default_agree():
    log = small_log()
    log.index = ["r4", "r1", "r3", "r0", "r2"]
    default = SequenceFeatureTransformer(max_len=2).set_output(transform="default")
    pandas = SequenceFeatureTransformer(max_len=2).set_output(transform="pandas")
    plain = SequenceFeatureTransformer(max_len=2)
    out_default = default.fit(log).transform(log)
    out_pandas = pandas.fit(log).transform(log)
    assert isinstance(out_default, pd.DataFrame)
    # The same frames; scikit-learn's pandas output sets the names again from
    # get_feature_names_out, which pandas then stores in its string dtype.
    same = functools.partial(pd.testing.assert_frame_equal, check_column_type=False)
    same(out_pandas, out_default)
    same(pandas.fit_transform(log), out_default)
    pd.testing.assert_frame_equal(plain.fit(log).transform(log), out_default)
    with sklearn.config_context(transform_output="pandas"):
        same(SequenceFeatureTransformer(max_len=2).fit_transform(log), out_default)


def test_get_feature_names_out_matches_output_exactly():
    log = small_log()
    t = SequenceFeatureTransformer(max_len=2, recency=False).fit(log)
    names = t.get_feature_names_out()
    assert isinstance(names, np.ndarray) and names.dtype == object
    assert names.tolist() == [
        "user_id", "item_id", "cate_id",
        "hist_item_id_0", "hist_item_id_1",
        "hist_cate_id_0", "hist_cate_id_1",
        "hist_len", "price",
    ]
    out = t.transform(log)
    assert list(out.columns) == names.tolist()
    # The created names as Python strings, as get_feature_names_out gives them (readers
    # that visit them one by one pay a call per name on pandas' Arrow-backed strings).
    assert out.columns.dtype == object
    assert t.get_feature_names_out(list(log.columns)).tolist() == names.tolist()
    with pytest.raises(ValueError, match="input_features"):
        t.get_feature_names_out(["user_id", "item_id"])
    # changing max_len after fit changes the names consistently with transform
    t.set_params(max_len=3)
    assert list(t.transform(log).columns) == t.get_feature_names_out().tolist()
    assert len(t.get_feature_names_out()) == 3 + 2 * 3 + 1 + 1


def test_fit_transform_equals_fit_then_transform():
    log = small_log()
    y = [1, 0, 1, 1, 0]
    pd.testing.assert_frame_equal(
        SequenceFeatureTransformer(max_len=3).fit_transform(log, y),
        SequenceFeatureTransformer(max_len=3).fit(log, y).transform(log),
    )
    pd.testing.assert_frame_equal(
        SequenceFeatureTransformer(max_len=3).fit_transform(log),
        SequenceFeatureTransformer(max_len=3).fit(log).transform(log),
    )


def test_fitted_attributes():
    log = small_log()
    t = SequenceFeatureTransformer().fit(log)
    assert t.n_features_in_ == 5
    assert t.feature_names_in_.tolist() == list(log.columns)
    assert len(t.behaviour_store_) == 5
    assert t.fit(log) is t


# --------------------------------------------------------------- clone, pickle, checks
def test_clone_gives_unfitted_copy_with_equal_params():
    t = SequenceFeatureTransformer(
        user_col="uid", item_col="iid", time_col="ts", history_cols=("iid", "c"), max_len=7
    )
    t.fit(
        pd.DataFrame({"uid": [1, 1], "iid": [1, 2], "c": [0, 0], "ts": [1, 2]})
    )
    c = clone(t)
    assert c.get_params() == t.get_params()
    assert c.history_cols == ("iid", "c")
    for attr in ("vocabularies_", "behaviour_store_", "n_behaviours_", "time_kind_"):
        assert not hasattr(c, attr)
    with pytest.raises(NotFittedError):
        c.transform(pd.DataFrame({"uid": [1], "iid": [1], "c": [0], "ts": [1]}))


@pytest.mark.parametrize("kind", ["int", "tz", "str"])
def test_pickle_round_trip_gives_identical_output(kind):
    log = small_log()
    log = log.assign(time=encode_times(log.time, kind))
    t = SequenceFeatureTransformer(max_len=3).fit(log, [1, 1, 0, 1, 1])
    restored = pickle.loads(pickle.dumps(t))
    query = pd.concat([log, log.assign(user_id="new", item_id="zz")], ignore_index=True)
    pd.testing.assert_frame_equal(restored.transform(query), t.transform(query))
    assert restored.get_feature_names_out().tolist() == t.get_feature_names_out().tolist()
    # the restored transformer keeps learning like the original
    more = log.assign(item_id="later")
    pd.testing.assert_frame_equal(
        restored.partial_fit(more).transform(query), t.partial_fit(more).transform(query)
    )


def test_unfitted_methods_raise_not_fitted():
    t = SequenceFeatureTransformer()
    with pytest.raises(NotFittedError):
        t.transform(small_log())
    with pytest.raises(NotFittedError):
        t.get_feature_names_out()


def test_default_params_are_immutable_tuples():
    t = SequenceFeatureTransformer()
    assert t.get_params() == {
        "user_col": "user_id",
        "item_col": "item_id",
        "time_col": "time",
        "history_cols": ("item_id", "cate_id"),
        "max_len": 50,
        "categorical_cols": (),
        "recency": True,
        "verbose": 0,
    }


def test_list_history_cols_accepted_and_kept_as_given():
    cols = ["item_id", "cate_id"]
    t = SequenceFeatureTransformer(history_cols=cols, max_len=2).fit(small_log())
    assert t.history_cols is cols
    pd.testing.assert_frame_equal(
        t.transform(small_log()),
        SequenceFeatureTransformer(max_len=2).fit_transform(small_log()),
    )


# --------------------------------------------------------------- the tutorial's file
@pytest.mark.skipif(not AMAZON_SAMPLE.exists(), reason="tutorial sample file not present")
def test_defaults_fit_the_amazon_sample_as_is():
    log = pd.read_csv(AMAZON_SAMPLE)
    t = SequenceFeatureTransformer()
    out = t.fit_transform(log)
    assert out.shape == (100, 3 + 3 * 50 + 1)  # ids, item and category histories, recency
    assert out.index.equals(log.index)
    assert [len(t.vocabularies_[c]) for c in ("user_id", "item_id", "cate_id")] == [17, 99, 67]
    names, expected = reference_transform(
        log, None, log, fit_times=log["time"].tolist(), times=log["time"].tolist(), max_len=50
    )
    assert out[names].to_numpy().tolist() == expected
    counts = [
        int(((log.user_id == r.user_id) & (log.time < r.time)).sum()) for r in log.itertuples()
    ]
    assert out["hist_len"].tolist() == counts
    assert sum(counts) > 0
    # user 13 has all rows at one time: nothing strictly earlier
    assert (out.loc[log.user_id == 13, "hist_len"] == 0).all()
    assert out.to_numpy().min() >= 0


# ------------------------------------------------------------------------ bad inputs
def _with_nan(col):
    def mutate(log):
        log = log.astype({col: object})
        log.loc[2, col] = None if col != "time" else np.nan
        return log

    return mutate


@pytest.mark.parametrize(
    "mutate, exc, patterns",
    [
        (lambda log: log.to_numpy(), TypeError, ["DataFrame", "ndarray"]),
        (lambda log: log.to_dict("list"), TypeError, ["DataFrame", "dict"]),
        (lambda log: log.iloc[:0], ValueError, ["empty"]),
        (lambda log: log.drop(columns="cate_id"), ValueError, ["cate_id", "not found"]),
        (lambda log: log.drop(columns="user_id"), ValueError, ["user_id", "not found"]),
        (lambda log: log.drop(columns="time"), ValueError, ["'time'", "not found"]),
        (
            lambda log: pd.concat([log, log[["item_id"]]], axis=1),
            ValueError,
            ["duplicated", "item_id"],
        ),
        (_with_nan("user_id"), ValueError, ["'user_id'", "missing"]),
        (_with_nan("item_id"), ValueError, ["'item_id'", "missing"]),
        (_with_nan("cate_id"), ValueError, ["'cate_id'", "missing"]),
        (_with_nan("time"), ValueError, ["'time'", "missing"]),
        (
            lambda log: log.assign(time=pd.Series(pd.to_datetime([1, 2, None, 4, 5], unit="D"))),
            ValueError,
            ["'time'", "missing"],
        ),
        (lambda log: log.assign(time=["x", "1", "2", "3", "4"]), ValueError, ["'time'", "parse"]),
        (lambda log: log.assign(time=[True, False, True, True, False]), TypeError, ["'time'"]),
        (lambda log: log.assign(time=[1.0, np.inf, 2.0, 3.0, 4.0]), ValueError, ["'time'"]),
        (lambda log: log.assign(time=[1.0, -np.inf, 2.0, 3.0, 4.0]), ValueError, ["'time'"]),
    ],
    ids=[
        "ndarray", "dict", "empty", "missing-attribute", "missing-user", "missing-time",
        "duplicated-column", "nan-user", "nan-item", "nan-attribute", "nan-time", "nat-time",
        "unparsable-time", "bool-time", "inf-time", "neg-inf-time",
    ],
)
def test_bad_X_raises_naming_the_problem(mutate, exc, patterns):
    bad = mutate(small_log())
    with pytest.raises(exc) as info:
        SequenceFeatureTransformer().fit(bad)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))
    # the same checks guard transform
    if isinstance(bad, pd.DataFrame) and len(bad) and set(bad.columns) == set(small_log()):
        t = SequenceFeatureTransformer().fit(small_log())
        with pytest.raises(exc) as info:
            t.transform(bad)
        for pattern in patterns:
            assert pattern in str(info.value), (pattern, str(info.value))


@pytest.mark.parametrize(
    "y, patterns",
    [
        ([0, 1, 2, 0, 1], ["y", "binary", "3"]),
        ([5, 5, 5, 5, 5], ["y", "single value"]),
        (["a", "a", "a", "a", "a"], ["y", "single value"]),
        ([0, 1], ["y", "5 rows", "2"]),
        ([0, 1, 0, 1, 0, 1], ["y", "5 rows", "6"]),
        ([0.0, 1.0, np.nan, 1.0, 0.0], ["y", "missing"]),
        ([[0], [1], [0], [1], [0]], ["y", "1-dimensional"]),
    ],
    ids=["three-values", "single-5", "single-str", "too-short", "too-long", "nan", "2d"],
)
def test_bad_y_raises_naming_y(y, patterns):
    for method in ("fit", "fit_transform", "partial_fit"):
        with pytest.raises(ValueError) as info:
            getattr(SequenceFeatureTransformer(), method)(small_log(), y)
        for pattern in patterns:
            assert pattern in str(info.value), (method, pattern, str(info.value))


@pytest.mark.parametrize(
    "params, exc, pattern",
    [
        ({"max_len": 0}, InvalidParameterError, "'max_len'"),
        ({"max_len": -3}, InvalidParameterError, "'max_len'"),
        ({"max_len": "5"}, InvalidParameterError, "'max_len'"),
        ({"max_len": 2.0}, InvalidParameterError, "'max_len'"),
        ({"max_len": True}, InvalidParameterError, "'max_len'"),
        ({"history_cols": ()}, ValueError, "history_cols"),
        ({"history_cols": []}, ValueError, "history_cols"),
        ({"history_cols": ("item_id", "item_id")}, ValueError, "history_cols"),
        ({"history_cols": ("item_id", "cate_id", "cate_id")}, ValueError, "history_cols"),
        ({"history_cols": ("cate_id",)}, ValueError, "history_cols"),
        ({"history_cols": ("item_id", "user_id")}, ValueError, "user_col"),
        ({"history_cols": ("item_id", "time")}, ValueError, "time_col"),
        ({"history_cols": "item_id"}, InvalidParameterError, "'history_cols'"),
        ({"history_cols": ("item_id", 3)}, ValueError, "history_cols"),
        ({"user_col": 1}, InvalidParameterError, "'user_col'"),
        ({"user_col": "time"}, ValueError, "user_col"),
        ({"item_col": "cate_id", "history_cols": ("item_id",)}, ValueError, "item_col"),
    ],
    ids=lambda v: (
        ",".join(f"{k}={x!r}" for k, x in v.items()) if isinstance(v, dict)
        else v.__name__ if isinstance(v, type) else str(v)
    ),
)
def test_bad_params_raise_in_fit_naming_the_parameter(params, exc, pattern):
    t = SequenceFeatureTransformer(**params)  # __init__ never validates
    assert t.get_params()[next(iter(params))] == params[next(iter(params))]
    with pytest.raises(exc) as info:
        t.fit(small_log())
    assert pattern in str(info.value)


def test_transform_with_different_columns_raises_naming_them():
    t = SequenceFeatureTransformer().fit(small_log())
    with pytest.raises(ValueError, match="extra") as info:
        t.transform(small_log().assign(extra=1))
    assert "unexpected" in str(info.value)
    with pytest.raises(ValueError, match="price"):
        t.transform(small_log().drop(columns="price"))
    with pytest.raises(ValueError, match="cate_id"):
        t.transform(small_log().drop(columns="cate_id"))


@pytest.mark.parametrize("clash", ["hist_len", "hist_item_id_0", "hist_cate_id_49"])
def test_passthrough_column_named_like_a_created_column_raises(clash):
    with pytest.raises(ValueError, match=clash):
        SequenceFeatureTransformer().fit(small_log().assign(**{clash: 1}))


def test_passthrough_column_beyond_max_len_is_fine():
    out = SequenceFeatureTransformer(max_len=2).fit_transform(
        small_log().assign(hist_item_id_2=7)
    )
    assert out.columns.tolist().count("hist_item_id_2") == 1
    assert (out["hist_item_id_2"] == 7).all()


def test_mostly_unknown_users_warn_about_user_grouped_folds():
    from sklearn_din import UnknownUsersWarning

    log = pd.DataFrame({"user_id": np.repeat(np.arange(40), 2), "item_id": 1, "cate_id": 1,
                        "time": np.tile([1, 2], 40)})
    seen, unseen = log[log.user_id < 20], log[log.user_id >= 20]
    t = SequenceFeatureTransformer(max_len=2).fit(seen)
    with pytest.warns(UnknownUsersWarning, match="FrozenEstimator"):
        t.transform(unseen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.transform(seen)  # known users: silent
