"""The fast paths of history building give exactly what the general ones give.

Logs that arrive in time order are sorted by user alone, queries in time order are
located by user alone, the recency buckets are padded by the history lengths instead of
NaN, and the history masks come from a table: each is checked here against a reference
that does not take the shortcut.
"""

import math

import numpy as np
import pandas as pd
import pytest

import sklearn_din._behaviour_store as store_module
from sklearn_din import SequenceFeatureTransformer
from sklearn_din._behaviour_store import BehaviourStore, _stable_argsort
from sklearn_din._layout import RECENCY_OCTAVES
from sklearn_din._transformer import recency_buckets

from .test_transformer import reference_transform


@pytest.mark.parametrize("bits", [1, 15, 16, 17, 32, 47, 48, 62])
def test_stable_argsort_is_numpys_stable_argsort(bits):
    rng = np.random.default_rng(bits)
    # Few distinct values, so that most of them repeat and stability is visible.
    pool = rng.integers(0, 2**bits, 40, dtype=np.int64)
    values = rng.choice(pool, 5_000)
    assert np.array_equal(_stable_argsort(values), np.argsort(values, kind="stable"))
    assert np.array_equal(_stable_argsort(values[:1]), [0])
    assert len(_stable_argsort(values[:0])) == 0


def _time_ordered_log(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": rng.integers(0, 25, n),
        "item_id": rng.integers(0, 60, n),
        "cate_id": rng.integers(0, 8, n),
        "time": np.sort(rng.integers(0, n // 4, n)),  # in time order, with many ties
    })


@pytest.mark.parametrize("with_y", [False, True])
def test_a_log_in_time_order_gets_the_reference_histories(with_y):
    log = _time_ordered_log(600, seed=1)
    y = np.random.default_rng(2).integers(0, 2, len(log)) if with_y else None
    t = SequenceFeatureTransformer(max_len=6, recency=False).fit(log, y)
    # Queries in time order too (the located-by-user path), then the same rows shuffled
    # (the general path), and users never seen.
    queries = pd.concat([log, log.sample(frac=1.0, random_state=3),
                         log.head(30).assign(user_id=999)], ignore_index=True)
    names, expected = reference_transform(log, y, queries, fit_times=log["time"].tolist(),
                                          times=queries["time"].tolist(), max_len=6)
    assert t.transform(queries)[names].to_numpy().tolist() == expected


def test_chunks_in_time_order_get_the_histories_of_one_fit():
    log = _time_ordered_log(600, seed=4)
    chunked = SequenceFeatureTransformer(max_len=6)
    for rows in np.array_split(np.arange(len(log)), 5):
        chunked.partial_fit(log.iloc[rows])
    whole = SequenceFeatureTransformer(max_len=6).fit(log)
    shuffled = log.sample(frac=1.0, random_state=5)
    for X in (log, shuffled):  # the first sorts by user alone, the second by full key
        out, reference = chunked.transform(X), whole.transform(X)
        # partial_fit numbers codes in order of arrival: compare the decoded histories
        for col in ("item_id", "cate_id"):
            cols = [f"hist_{col}_{k}" for k in range(6)]
            assert (chunked.decode(col, out[cols]) == whole.decode(col, reference[cols])).all()
        gaps = [f"hist_gap_{k}" for k in range(6)]
        assert out[[*gaps, "hist_len"]].equals(reference[[*gaps, "hist_len"]])


def test_the_store_sorted_by_user_alone_equals_the_store_sorted_by_key():
    log = _time_ordered_log(2_000, seed=6)
    users, times = log["user_id"].to_numpy(), log["time"].to_numpy()
    codes = log[["item_id", "cate_id"]].to_numpy().astype(np.int32)
    fast = BehaviourStore.from_arrays(users, times, codes)
    # The same behaviours, not in time order: sorted by the full (user, time) key. Rows
    # with equal (user, time) keep their arrival order in both.
    order = np.random.default_rng(7).permutation(len(log))
    order = order[np.argsort(times[order], kind="stable")][::-1]  # time order reversed
    slow = BehaviourStore.from_arrays(users[order], times[order], codes[order])
    def by_key(users, times, codes):  # lexsort is stable: ties stay in arrival order
        return codes[np.lexsort((np.arange(len(users)), times, users))]

    assert np.array_equal(fast.codes.T, by_key(users, times, codes))
    assert np.array_equal(slow.codes.T, by_key(users[order], times[order], codes[order]))
    assert np.array_equal(fast.keys, slow.keys)


def test_recency_padded_by_lengths_equals_recency_padded_by_nan():
    rng = np.random.default_rng(8)
    n, max_len = 300, 9
    query = rng.uniform(1e6, 2e6, n)
    lengths = rng.integers(0, max_len + 1, n)
    keep = np.arange(max_len) < lengths[:, None]
    real = query[:, None] - rng.uniform(0, 1e6, (n, max_len))
    with_nan = np.where(keep, real, np.nan)
    # Past the length: anything (other users' times, later times, NaN)
    anything = np.where(keep, real, rng.choice([np.nan, 3e6, -1.0, 0.0], (n, max_len)))
    expected = recency_buckets(query, with_nan, 7.0)
    assert (expected[~keep] == 0).all() and (expected[keep] >= 2).all()
    assert np.array_equal(recency_buckets(query, anything, 7.0, keep=keep), expected)
    out = np.full((n, max_len + 3), -5, dtype=np.int32)
    recency_buckets(query, anything, 7.0, out=out[:, 2:-1], keep=keep)
    assert np.array_equal(out[:, 2:-1], expected) and (out[:, [0, 1, -1]] == -5).all()


def test_history_masks_from_the_table_equal_masks_by_comparison(monkeypatch):
    log = _time_ordered_log(600, seed=9).sample(frac=1.0, random_state=10)
    with_table = SequenceFeatureTransformer(max_len=7).fit_transform(log)
    monkeypatch.setattr(store_module, "_KEEP_TABLE_LEN", 0)  # every mask by comparison
    assert SequenceFeatureTransformer(max_len=7).fit_transform(log).equals(with_table)


@pytest.mark.parametrize("unit", [1.0, 0.25, 3.0])
def test_recency_buckets_at_the_edges_follow_the_formula(unit):
    # Gaps of 0 (times equal once cast to float), below one unit, exactly a power of two
    # units, just below one, and far beyond the last octave.
    units = np.array([0.0, 1e-300, 0.5, 1.0, 2.0, 2.0 - 1e-12, 4.0, 1023.0, 1024.0, 1e30])
    query = np.full(1, 1e6)
    behaviour = query[:, None] - units[None, :] * unit
    gaps = query[:, None] - behaviour  # what the function computes, rounding included
    expected = [2 + min(max(math.floor(math.log2(max(g / unit, 1.0))), 0), RECENCY_OCTAVES - 1)
                for g in gaps[0]]
    assert recency_buckets(query, behaviour, unit).tolist() == [expected]
    keep = np.ones_like(behaviour, dtype=bool)
    assert recency_buckets(query, behaviour, unit, keep=keep).tolist() == [expected]


@pytest.mark.parametrize("recency", [True, False])
def test_blocks_of_rows_are_seamless(monkeypatch, recency):
    import sklearn_din._transformer as transformer_module

    log = _time_ordered_log(600, seed=11).sample(frac=1.0, random_state=12)
    t = SequenceFeatureTransformer(max_len=5, recency=recency).fit(log)
    one_block = t.transform(log)
    monkeypatch.setattr(transformer_module, "HISTORY_BLOCK_CELLS", 7 * 5)  # 7 rows a block
    assert t.transform(log).equals(one_block)
    monkeypatch.setattr(transformer_module, "HISTORY_BLOCK_CELLS", 1)  # at least a row
    assert t.transform(log).equals(one_block)
