"""make_interactions, sample_negatives and leave_last_out_split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no slow "explain" phase
)


def recent_category_hit_rate(log: pd.DataFrame, lookback: int = 5) -> float:
    """Share of clicks (after each user's first) whose category is among the user's
    previous ``lookback`` clicks' categories; ``log`` is in time order."""
    hits = total = 0
    for cates in log.groupby("user_id", sort=False)["cate_id"]:
        values = cates[1].tolist()
        for k in range(1, len(values)):
            total += 1
            hits += values[k] in values[max(0, k - lookback):k]
    return hits / total


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return make_interactions(n_users=300, n_items=200, n_categories=20, random_state=0)


@pytest.fixture(scope="module")
def ctr_rows(log) -> pd.DataFrame:
    return sample_negatives(log, n_negatives=2, random_state=0)


# ------------------------------------------------------------------ make_interactions
def test_make_interactions_columns_dtypes_and_ranges(log):
    assert list(log.columns) == ["user_id", "item_id", "time", "cate_id"]
    for col in log.columns:
        assert log[col].dtype == np.int64, col
    assert log.index.equals(pd.RangeIndex(len(log)))
    assert log["time"].is_monotonic_increasing
    assert set(log["user_id"]) == set(range(1, 301))
    assert log["item_id"].between(1, 200).all()
    assert log["cate_id"].between(1, 20).all()
    # unix seconds around 2011-2014
    assert log["time"].between(1_300_000_000, 1_500_000_000).all()
    # every item has exactly one category
    assert (log.groupby("item_id")["cate_id"].nunique() == 1).all()


def test_make_interactions_every_user_has_at_least_two_events(log):
    per_user = log.groupby("user_id").size()
    assert per_user.min() >= 2
    assert len(per_user) == 300
    # mean_events=20 by default: the mean count is close to it
    assert 16 <= per_user.mean() <= 24
    tiny = make_interactions(n_users=50, n_items=30, n_categories=5, mean_events=2,
                             random_state=1)
    assert (tiny.groupby("user_id").size() == 2).all()


def test_make_interactions_is_reproducible():
    a = make_interactions(n_users=40, n_items=30, n_categories=5, random_state=7)
    b = make_interactions(n_users=40, n_items=30, n_categories=5, random_state=7)
    c = make_interactions(n_users=40, n_items=30, n_categories=5, random_state=8)
    d = make_interactions(
        n_users=40, n_items=30, n_categories=5, random_state=np.random.RandomState(7)
    )
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, d)
    assert not a.equals(c)


def test_make_interactions_plants_the_recent_category_signal(log):
    planted = recent_category_hit_rate(log)
    # a uniform category hits one of at most 5 recent categories with prob <= 5 / 20
    assert planted > 0.6
    uniform = make_interactions(
        n_users=300, n_items=200, n_categories=20, recency_weight=0.0, interest_weight=0.0,
        random_state=0,
    )
    baseline = recent_category_hit_rate(uniform)
    assert baseline < 1 - (1 - 1 / 20) ** 5 + 0.03
    assert planted > baseline + 0.35
    # the interest mechanism alone gives something in between
    interest_only = make_interactions(
        n_users=300, n_items=200, n_categories=20, recency_weight=0.0, interest_weight=1.0,
        random_state=0,
    )
    assert baseline + 0.2 < recent_category_hit_rate(interest_only) < planted + 0.3


def test_make_interactions_all_categories_used_with_enough_items():
    log = make_interactions(n_users=200, n_items=20, n_categories=20, random_state=3)
    assert log.groupby("item_id")["cate_id"].first().nunique() == log["cate_id"].nunique()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 0}, "n_items"),
        ({"n_categories": 0}, "n_categories"),
        ({"n_items": 5, "n_categories": 6}, "n_categories <= n_items"),
        ({"mean_events": 1.5}, "mean_events"),
        ({"recency_weight": -0.1}, "recency_weight"),
        ({"interest_weight": -0.1}, "interest_weight"),
        ({"recency_weight": 0.8, "interest_weight": 0.3}, "sum to <= 1"),
    ],
)
def test_make_interactions_rejects_bad_parameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_interactions(**kwargs)


# ------------------------------------------------------------------- sample_negatives
@pytest.mark.parametrize("n_negatives", [1, 2, 4])
def test_sample_negatives_label_balance_and_layout(log, n_negatives):
    rows = sample_negatives(log, n_negatives=n_negatives, random_state=0)
    assert len(rows) == len(log) * (n_negatives + 1)
    assert rows["label"].mean() == pytest.approx(1 / (n_negatives + 1))
    assert rows.index.equals(pd.RangeIndex(len(rows)))
    assert list(rows.columns) == [*log.columns, "label"]
    # each positive is directly followed by exactly its n negatives
    labels = rows["label"].to_numpy().reshape(len(log), n_negatives + 1)
    assert (labels[:, 0] == 1).all() and (labels[:, 1:] == 0).all()
    # the positives are the log, in order
    pd.testing.assert_frame_equal(
        rows[rows.label == 1].drop(columns="label").reset_index(drop=True), log
    )


def test_sample_negatives_never_an_item_of_the_user(ctr_rows, log):
    seen = set(zip(log.user_id, log.item_id, strict=True))
    negatives = ctr_rows[ctr_rows.label == 0]
    assert not any(
        (u, i) in seen for u, i in zip(negatives.user_id, negatives.item_id, strict=True)
    )
    assert set(negatives.item_id) <= set(log.item_id)


def test_sample_negatives_copy_user_time_and_take_their_items_attributes(ctr_rows, log):
    blocks = ctr_rows.to_numpy().reshape(len(log), 3, ctr_rows.shape[1])
    cols = list(ctr_rows.columns)
    u, t = cols.index("user_id"), cols.index("time")
    for k in (1, 2):
        assert (blocks[:, k, u] == blocks[:, 0, u]).all()
        assert (blocks[:, k, t] == blocks[:, 0, t]).all()
    item_cate = log.groupby("item_id")["cate_id"].first()
    assert (ctr_rows["cate_id"].to_numpy() == item_cate[ctr_rows["item_id"]].to_numpy()).all()


def test_sample_negatives_extra_columns_copied_from_positive():
    log = pd.DataFrame(
        {
            "uid": ["a", "a", "b", "c"],
            "iid": ["x", "y", "z", "w"],
            "shop": ["s1", "s2", "s3", "s4"],
            "brand": ["B1", "B2", "B3", "B4"],
            "time": [1, 2, 3, 4],
            "device": ["phone", "pc", "tv", "pc"],
        },
        index=[10, 20, 30, 40],
    )
    rows = sample_negatives(
        log, n_negatives=3, user_col="uid", item_col="iid",
        item_attribute_cols=("shop", "brand"), label_col="clicked", random_state=0,
    )
    assert rows.index.equals(pd.RangeIndex(16))
    assert rows["clicked"].tolist() == [1, 0, 0, 0] * 4
    attrs = log.set_index("iid")[["shop", "brand"]]
    for _, row in rows.iterrows():
        assert (row["shop"], row["brand"]) == tuple(attrs.loc[row["iid"]])
    for k, (_, pos) in enumerate(log.iterrows()):
        block = rows.iloc[4 * k:4 * k + 4]
        assert (block["uid"] == pos["uid"]).all()
        assert (block["time"] == pos["time"]).all()
        assert (block["device"] == pos["device"]).all()
        assert block["iid"].iloc[0] == pos["iid"]
        negatives = set(block["iid"].iloc[1:])
        assert negatives.isdisjoint(set(log.loc[log.uid == pos["uid"], "iid"]))


def test_sample_negatives_is_uniform_over_unseen_items():
    log = pd.DataFrame(
        {"user_id": [1, 2, 3, 4, 5], "item_id": [0, 1, 2, 3, 4], "cate_id": [0, 1, 2, 3, 4]}
    )
    rows = sample_negatives(log, n_negatives=4000, random_state=0)
    drawn = rows[(rows.label == 0) & (rows.user_id == 1)]["item_id"].value_counts()
    assert set(drawn.index) == {1, 2, 3, 4}
    assert drawn.between(850, 1150).all(), drawn.to_dict()


def test_sample_negatives_is_reproducible(log):
    a = sample_negatives(log, random_state=3)
    b = sample_negatives(log, random_state=3)
    c = sample_negatives(log, random_state=4)
    d = sample_negatives(log, random_state=np.random.RandomState(3))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, d)
    assert not a.equals(c)


def test_sample_negatives_does_not_modify_its_input(log):
    copy = log.copy()
    sample_negatives(log, random_state=0)
    pd.testing.assert_frame_equal(log, copy)


def test_sample_negatives_user_repeating_an_item_still_gets_negatives():
    # user 1 clicked item 10 three times: items 20 and 30 remain available
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3],
            "item_id": [10, 10, 10, 20, 30],
            "cate_id": [0, 0, 0, 1, 2],
            "time": [1, 2, 3, 1, 1],
        }
    )
    rows = sample_negatives(log, random_state=0)
    negatives = rows[rows.label == 0]
    assert len(negatives) == 5
    assert not negatives.loc[negatives.user_id == 1, "item_id"].isin([10]).any()


@HYPOTHESIS
@given(
    pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 7)), min_size=1, max_size=30),
    n_negatives=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_sample_negatives_properties_on_random_logs(pairs, n_negatives, seed):
    log = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    log["cate_id"] = log["item_id"] % 3
    log["time"] = np.arange(len(log))
    seen = {u: set(log.item_id[log.user_id == u]) for u in log.user_id.unique()}
    n_items = log.item_id.nunique()
    if any(len(s) >= n_items for s in seen.values()):
        with pytest.raises(ValueError, match="every item"):
            sample_negatives(log, n_negatives=n_negatives, random_state=seed)
        return
    rows = sample_negatives(log, n_negatives=n_negatives, random_state=seed)
    assert len(rows) == len(log) * (n_negatives + 1)
    for k in range(len(log)):
        block = rows.iloc[k * (n_negatives + 1):(k + 1) * (n_negatives + 1)]
        assert block["label"].tolist() == [1] + [0] * n_negatives
        assert (block["user_id"] == log.user_id[k]).all()
        assert (block["time"] == log.time[k]).all()
        assert block["item_id"].iloc[0] == log.item_id[k]
        assert not set(block["item_id"].iloc[1:]) & seen[log.user_id[k]]
    assert (rows["cate_id"] == rows["item_id"] % 3).all()


@pytest.mark.parametrize(
    "mutate, kwargs, exc, pattern",
    [
        (lambda d: d, {"n_negatives": 0}, ValueError, "n_negatives"),
        (lambda d: d, {"n_negatives": -1}, ValueError, "n_negatives"),
        (lambda d: d, {"n_negatives": 1.5}, (TypeError, ValueError), "n_negatives"),
        (lambda d: d.drop(columns="cate_id"), {}, ValueError, "cate_id"),
        (lambda d: d.drop(columns="item_id"), {}, ValueError, "item_id"),
        (lambda d: d, {"user_col": "uid"}, ValueError, "uid"),
        (lambda d: d.assign(item_id=[1.0, np.nan, 3.0, 4.0]), {}, ValueError, "'item_id'"),
        (lambda d: d.assign(user_id=[1, None, 2, 3]), {}, ValueError, "'user_id'"),
        (lambda d: d.assign(cate_id=[1.0, np.nan, 3.0, 4.0]), {}, ValueError, "'cate_id'"),
        (lambda d: d.to_numpy(), {}, TypeError, "DataFrame"),
        (lambda d: d.iloc[:0], {}, ValueError, "empty"),
        (lambda d: d.assign(item_id=1), {}, ValueError, "every item"),
        (
            lambda d: pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 2],
                                    "cate_id": [0, 0, 0]}),
            {},
            ValueError,
            "every item",
        ),
    ],
    ids=[
        "zero-negatives", "negative-negatives", "fractional-negatives", "missing-attribute",
        "missing-item", "missing-user-col", "nan-item", "none-user", "nan-attribute",
        "ndarray", "empty", "single-item", "user-saw-all-items",
    ],
)
def test_sample_negatives_errors(mutate, kwargs, exc, pattern):
    base = pd.DataFrame(
        {"user_id": [1, 1, 2, 3], "item_id": [1, 2, 3, 4], "cate_id": [0, 0, 1, 1],
         "time": [1, 2, 3, 4]}
    )
    with pytest.raises(exc, match=pattern):
        sample_negatives(mutate(base), random_state=0, **kwargs)


# --------------------------------------------------------------- leave_last_out_split
def _check_partition(rows, parts):
    train, valid, test = parts
    indexes = [set(p.index) for p in parts]
    assert not (indexes[0] & indexes[1]) and not (indexes[0] & indexes[2])
    assert not (indexes[1] & indexes[2])
    assert sum(map(len, parts)) == len(rows)
    assert indexes[0] | indexes[1] | indexes[2] == set(rows.index)
    for part in parts:  # original index, order and content
        pd.testing.assert_frame_equal(part, rows.loc[rows.index.isin(part.index)])


def test_leave_last_out_split_on_ctr_rows(ctr_rows):
    parts = leave_last_out_split(ctr_rows)
    _check_partition(ctr_rows, parts)
    train, valid, test = parts
    last = ctr_rows.groupby("user_id")["time"].max()
    assert (test["time"].to_numpy() == last[test["user_id"]].to_numpy()).all()
    # every user (all have >= 2 events) has test rows, and all rows at its last time
    assert set(test.user_id) == set(ctr_rows.user_id)
    at_last = ctr_rows["time"].to_numpy() == last[ctr_rows["user_id"]].to_numpy()
    assert set(ctr_rows.index[at_last]) == set(test.index)
    # validation = the second-to-last event of users with >= 3 events
    n_events = ctr_rows.groupby("user_id")["time"].nunique()
    assert set(valid.user_id) == set(n_events.index[n_events >= 3])
    valid_time = valid.groupby("user_id")["time"].agg(["min", "max"])
    assert (valid_time["min"] == valid_time["max"]).all()
    assert (valid_time["max"] < last[valid_time.index]).all()
    # training rows are strictly earlier than the user's validation/test rows
    cutoff = pd.concat([valid, test]).groupby("user_id")["time"].min()
    assert (train["time"].to_numpy() < cutoff[train["user_id"]].to_numpy()).all()
    # each positive and its negatives (same user, time) stay in one part
    part_of = pd.Series(0, index=ctr_rows.index)
    part_of[valid.index], part_of[test.index] = 1, 2
    assert (ctr_rows.assign(part=part_of).groupby(["user_id", "time"])["part"].nunique() == 1).all()
    assert train["label"].mean() == pytest.approx(1 / 3, abs=0.01)


def test_leave_last_out_split_small_users_as_documented():
    rows = pd.DataFrame(
        {
            "user_id": [1, 2, 2, 3, 3, 3, 3, 4, 4],
            "time": [5, 8, 7, 1, 2, 2, 3, 4, 4],
            "label": [1, 1, 1, 1, 1, 0, 1, 1, 0],
        },
        index=["a", "b", "c", "d", "e", "f", "g", "h", "i"],
    )
    train, valid, test = leave_last_out_split(rows)
    # user 1 (one event): train only; user 2 (two events): last -> test, no validation;
    # user 3: ties at time 2 go to validation together; user 4: one event (two rows)
    assert list(train.index) == ["a", "c", "d", "h", "i"]
    assert list(valid.index) == ["e", "f"]
    assert list(test.index) == ["b", "g"]
    _check_partition(rows, (train, valid, test))


def test_leave_last_out_split_custom_columns_and_datetimes():
    rows = pd.DataFrame(
        {
            "who": ["x", "x", "x", "y", "y"],
            "when": pd.to_datetime(
                ["2020-01-03", "2020-01-01", "2020-01-02", "2021-01-01", "2020-01-01"]
            ),
        }
    )
    train, valid, test = leave_last_out_split(rows, user_col="who", time_col="when")
    assert list(train.index) == [1, 4]
    assert list(valid.index) == [2]
    assert list(test.index) == [0, 3]


def test_leave_last_out_split_orders_date_strings_chronologically():
    # strings the transformer parses as dates must be split in time order, not
    # alphabetically: "12/31/2019" is earlier than "01/01/2020"
    rows = pd.DataFrame({"user_id": [1, 1], "time": ["12/31/2019", "01/01/2020"]})
    train, valid, test = leave_last_out_split(rows)
    assert test["time"].tolist() == ["01/01/2020"]
    assert train["time"].tolist() == ["12/31/2019"]


@HYPOTHESIS
@given(
    events=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=1, max_size=40),
)
def test_leave_last_out_split_properties(events):
    rows = pd.DataFrame(events, columns=["user_id", "time"])
    rows.index = [f"r{k}" for k in range(len(rows))][::-1]
    parts = leave_last_out_split(rows)
    _check_partition(rows, parts)
    train, valid, test = parts
    for user, group in rows.groupby("user_id"):
        times = sorted(set(group.time))
        assert set(test.index[test.user_id == user]) == (
            set(group.index[group.time == times[-1]]) if len(times) >= 2 else set()
        )
        assert set(valid.index[valid.user_id == user]) == (
            set(group.index[group.time == times[-2]]) if len(times) >= 3 else set()
        )


@pytest.mark.parametrize(
    "mutate, exc, pattern",
    [
        (lambda d: d.drop(columns="time"), ValueError, "time"),
        (lambda d: d.drop(columns="user_id"), ValueError, "user_id"),
        (lambda d: d.assign(time=[1.0, np.nan, 3.0]), ValueError, "'time'"),
        (lambda d: d.assign(user_id=[1, None, 3]), ValueError, "'user_id'"),
        (lambda d: d.to_numpy(), TypeError, "DataFrame"),
        (lambda d: d.iloc[:0], ValueError, "empty"),
    ],
    ids=["missing-time", "missing-user", "nan-time", "none-user", "ndarray", "empty"],
)
def test_leave_last_out_split_errors(mutate, exc, pattern):
    rows = pd.DataFrame({"user_id": [1, 1, 2], "time": [1, 2, 3]})
    with pytest.raises(exc, match=pattern):
        leave_last_out_split(mutate(rows))


def test_read_interactions_keeps_the_columns_and_names_a_missing_one(tmp_path):
    from sklearn_din.datasets import read_interactions

    path = tmp_path / "log.csv"
    pd.DataFrame({"extra": [0], "time": [5], "cate_id": [1], "item_id": [7],
                  "user_id": [3]}).to_csv(path, index=False)
    log = read_interactions(path)
    assert list(log.columns) == ["user_id", "item_id", "time", "cate_id"]
    assert log.iloc[0].tolist() == [3, 7, 5, 1]
    pd.DataFrame({"user_id": [1], "time": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="item_id"):
        read_interactions(path)
