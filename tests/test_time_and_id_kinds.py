"""Time and id dtypes that change between fit and transform: exact, leak-free, or refused.

Issue 14, items 1-4 and 16: times that wrapped (uint64), zones that were mixed
silently, floats compared with nanosecond integers, ids whose dtype changed, and
pyarrow timestamps. Every test here failed on 0.1.0.
"""

import datetime as dt
import decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream

pa = pytest.importorskip("pyarrow")

T = 1_700_000_000_000_000_000  # nanoseconds near 2023: float64 steps of 256 here


def log(times, users=None, items=None):
    n = len(times)
    return pd.DataFrame({
        "user_id": users if users is not None else [1] * n,
        "item_id": items if items is not None else list(range(5, 5 + n)),
        "cate_id": 1,
        "time": times,
    })


# ---------------------------------------------------------------- 1: uint64 wrap
def test_uint64_times_beyond_int64_are_refused_not_wrapped():
    times = np.array([2**63 - 10, 2**63 + 10], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"'time'.*2\*\*63"):
        SequenceFeatureTransformer().fit_transform(log(times))


def test_uint64_times_within_int64_are_exact():
    times = np.array([2**63 - 20, 2**63 - 10], dtype=np.uint64)
    out = SequenceFeatureTransformer().fit_transform(log(times))
    assert out["hist_len"].tolist() == [0, 1]


# ------------------------------------------------------- 2: naive vs aware datetimes
NAIVE = pd.Series(pd.to_datetime(["2024-01-01 12:00"] * 4))
TOKYO = pd.Series(pd.to_datetime(["2024-01-01 14:00"] * 4).tz_localize("Asia/Tokyo"))


@pytest.mark.parametrize("fit_times, later_times", [(TOKYO, NAIVE), (NAIVE, TOKYO)],
                         ids=["aware-then-naive", "naive-then-aware"])
@pytest.mark.parametrize("method", ["transform", "partial_fit", "history_times"])
def test_naive_and_aware_datetimes_are_never_compared(fit_times, later_times, method):
    # 14:00 JST is 05:00 UTC: read as UTC, the naive 12:00 query would see that click
    t = SequenceFeatureTransformer().fit(log(fit_times))
    with pytest.raises(TypeError, match="'time'.*tz-(naive|aware) datetimes but tz-"):
        getattr(t, method)(log(later_times))
    assert t.n_behaviours_ == 4  # a refused partial_fit changed nothing


def test_a_column_mixing_naive_and_zoned_strings_is_refused():
    times = ["2024-01-01T12:00:00", "2024-01-01T14:00:00+09:00"]
    with pytest.raises(ValueError, match="'time' mixes times without a time zone"):
        SequenceFeatureTransformer().fit(log(times))


def test_zoned_strings_with_several_offsets_compare_as_instants():
    # DST: the same zone gives two offsets; both are instants, so they compare exactly
    times = ["2020-10-25T02:30:00+02:00", "2020-10-25T02:10:00+01:00"]
    out = SequenceFeatureTransformer().fit_transform(log(times))
    assert out["hist_len"].tolist() == [0, 1]


def test_naive_strings_stay_naive():
    t = SequenceFeatureTransformer().fit(log(NAIVE))
    strings = NAIVE.dt.strftime("%Y-%m-%dT%H:%M:%S")
    pd.testing.assert_frame_equal(t.transform(log(strings)), t.transform(log(NAIVE)))
    assert t.time_dtype_ == "datetime64[ns]"
    assert SequenceFeatureTransformer().fit(log(TOKYO)).time_dtype_ == "datetime64[ns, UTC]"


# ------------------------------------------------- 3: floats against integer times
def test_float_queries_against_nanosecond_integers_compare_exactly():
    # clicks at T+100, T+200 and T+256 (int64 ns); the query at float64 T+256 follows the
    # first two only. Compared as floats, T+200 rounds onto T+256 and drops out.
    fit = log(np.array([T + 100, T + 200, T + 256], dtype=np.int64))
    t = SequenceFeatureTransformer().fit(fit)
    assert float(T + 256) == T + 256 and float(T + 200) == T + 256
    query = log(np.array([float(T + 256)]), items=[9])
    assert t.transform(query)["hist_len"].tolist() == [2]
    assert t.transform(query)["hist_item_id_0"].tolist() == [3]  # T+200, the most recent


def test_fractional_float_queries_against_small_integers():
    t = SequenceFeatureTransformer().fit(log([1, 2, 3]))
    out = t.transform(log([0.5, 2.0, 2.5], items=[5, 6, 7]))
    assert out["hist_len"].tolist() == [0, 1, 2]


def test_integer_times_beyond_2_53_against_float_times_are_refused():
    t = SequenceFeatureTransformer().fit(log([0.5, 1.5]))
    assert t.transform(log([1, 2], items=[5, 6]))["hist_len"].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"'time'.*2\*\*53"):
        t.transform(log(np.array([2**53 + 1], dtype=np.int64), items=[5]))


def test_partial_fit_stores_only_exact_times():
    t = SequenceFeatureTransformer().fit(log([1, 2]))
    with pytest.raises(ValueError, match="'time' has non-integer times"):
        t.partial_fit(log([2.5]))
    t.partial_fit(log(np.array([3.0]), items=[7]))  # an integral float is exact
    assert t.behaviour_store_.times.dtype == np.int64
    assert t.transform(log([4], items=[8]))["hist_len"].tolist() == [3]


# ------------------------------------------------------ 4: id dtype changed since fit
def test_ids_of_another_type_are_refused_not_all_unknown():
    base = log([1, 2, 3, 4], users=[1, 1, 2, 2], items=[5, 6, 5, 7])
    t = SequenceFeatureTransformer().fit(base)
    with pytest.raises(TypeError, match="'item_id' holds strings but numbers were seen in fit"):
        t.transform(base.assign(item_id=base["item_id"].astype(str)))
    # the same numbers as floats (or another int width) are the same ids
    same = t.transform(base.assign(item_id=base["item_id"].astype(float)))
    pd.testing.assert_frame_equal(same, t.transform(base))


def test_partial_fit_does_not_split_a_user_in_two():
    base = log([1, 2, 3, 4], users=[1, 1, 2, 2])
    t = SequenceFeatureTransformer().fit(base)
    with pytest.raises(TypeError, match="'user_id' holds strings"):
        t.partial_fit(log([5], users=["1"]))
    assert t.vocabularies_["user_id"].tolist() == [1, 2]


def test_fit_stream_names_the_chunk_whose_ids_changed_type():
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    rows = log(list(range(200)), users=rng.integers(0, 10, 200).tolist(),
               items=rng.integers(0, 20, 200).tolist()).assign(label=rng.integers(0, 2, 200))
    chunks = [rows.iloc[:100], rows.iloc[100:].assign(item_id=lambda d: d["item_id"].astype(str))]
    transformer = SequenceFeatureTransformer(max_len=3).fit(chunks[0].drop(columns="label"))
    model = make_pipeline(transformer, DINClassifier(max_epochs=1, verbose=0))
    with pytest.raises(TypeError, match="chunk 1: .*'item_id' holds strings"):
        fit_stream(model, chunks)


# ---------------------------------------------------- 16: every dtype of a time column
def stamps(n=3):
    return pd.Series(pd.Timestamp("2021-03-04 05:06:07") + pd.to_timedelta(range(n), unit="h"))


@pytest.mark.parametrize("make, reference", [
    (lambda: stamps().dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
     .astype("timestamp[ns, tz=Asia/Tokyo][pyarrow]"), "aware"),
    (lambda: stamps().astype("timestamp[ms][pyarrow]"), "naive"),
    (lambda: stamps().dt.tz_localize("UTC").astype("timestamp[us, tz=UTC][pyarrow]"), "aware"),
    (lambda: stamps().astype("datetime64[s]"), "naive"),
    (lambda: stamps().dt.to_period("h"), "hour"),  # a period is read as its start
    (lambda: pd.Series([10, 20, 30], dtype="int64[pyarrow]"), "numbers"),
    (lambda: pd.Series([10, 20, 30], dtype="Int64"), "numbers"),
    (lambda: pd.Series([1.5, 2.5, 3.5], dtype="float32"), "numbers"),
    (lambda: pd.Series([10, 20, 30], dtype="category"), "numbers"),
    (lambda: pd.Series([10, 20, 30], dtype=object), "numbers"),
], ids=["arrow-tz", "arrow-naive-ms", "arrow-utc-us", "numpy-s", "period", "arrow-int",
        "nullable-int", "float32", "category-int", "object-int"])
def test_every_time_dtype_gives_the_histories_of_its_values(make, reference):
    times = make()
    out = SequenceFeatureTransformer().fit_transform(log(times))
    assert out["hist_len"].tolist() == [0, 1, 2]
    # and it compares with the plain numpy form of the same values
    t = SequenceFeatureTransformer().fit(log(times))
    plain = {"aware": stamps().dt.tz_localize("UTC"), "naive": stamps(),
             "hour": stamps().dt.floor("h"), "numbers": pd.Series([10.0, 20.0, 30.0])}[reference]
    if reference == "numbers" and times.dtype.kind == "f":
        plain = times.astype("float64")
    assert t.transform(log(plain))["hist_len"].tolist() == [0, 1, 2]


def test_category_of_integers_is_read_as_numbers_not_nanoseconds():
    t = SequenceFeatureTransformer().fit(log(pd.Series([1, 2], dtype="category")))
    assert t.time_kind_ == "numeric"


@pytest.mark.parametrize("times, exc, pattern", [
    (pd.Series(pd.to_timedelta([1, 2], unit="s")), TypeError, "durations"),
    (pd.Series([1, 2], dtype=pd.ArrowDtype(pa.duration("s"))), TypeError, "durations"),
    (pd.Series([decimal.Decimal("1.1"), decimal.Decimal("2.2")]), TypeError, "Decimal"),
    (pd.Series([1.5, 2.5], dtype=pd.ArrowDtype(pa.decimal128(5, 2))), TypeError, "decimals"),
    (pd.Series([1 + 1j, 2 + 0j]), TypeError, "complex"),
    (pd.Series([2**64 + 1, 1], dtype=object), ValueError, "int64 range"),
    (pd.Series([True, False]), TypeError, "boolean"),
    (pd.Series([dt.date(2262, 5, 1), dt.date(2020, 1, 1)], dtype=pd.ArrowDtype(pa.date32())),
     ValueError, "1677-09-22"),
], ids=["timedelta", "arrow-duration", "decimal", "arrow-decimal", "complex", "huge-object-int",
        "bool", "arrow-date-out-of-range"])
def test_unusable_time_dtypes_are_refused_naming_the_column(times, exc, pattern):
    with pytest.raises(exc, match=f"'time'.*{pattern}|{pattern}.*'time'"):
        SequenceFeatureTransformer().fit(log(times))


# ----------------------------------------------------- hypothesis: dtypes mixed at will
BASES = {"small": 0, "2**53": 2**53 - 4, "ns": T, "2**62": 2**62}
NUMERIC = ["int64", "int32", "uint64", "float64", "float32", "Int64", "int64[pyarrow]",
           "float64[pyarrow]", "object", "category"]
DATETIME = ["ns", "s", "UTC", "Asia/Tokyo", "America/New_York", "arrow-naive", "arrow-tz",
            "str-naive", "str-zoned"]


def time_column(raw: list[int], kind: str, base: int, step: int) -> pd.Series:
    if kind in NUMERIC:
        values = [base + step * t for t in raw]
        if kind in ("int32",) and max(values, default=0) >= 2**31:
            values = raw  # does not fit: the small values instead
        if kind in ("float32",):
            return pd.Series(np.asarray(values, dtype=np.float64).astype(np.float32))
        if kind == "object":
            return pd.Series(values, dtype=object)
        if kind == "category":
            return pd.Series(values).astype("category")
        return pd.Series(np.asarray(values, dtype=np.float64 if "float" in kind else
                                    np.uint64 if kind == "uint64" else np.int64)).astype(kind)
    naive = pd.Series(pd.Timestamp("2021-03-28 00:30") + pd.to_timedelta(raw, unit="h"))
    if kind == "ns":
        return naive
    if kind == "s":
        return naive.astype("datetime64[s]")
    if kind == "arrow-naive":
        return naive.astype("timestamp[ns][pyarrow]")
    if kind == "str-naive":
        return naive.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    aware = naive.dt.tz_localize("UTC")
    if kind == "arrow-tz":
        return aware.dt.tz_convert("Europe/Paris").astype("timestamp[ns, tz=Europe/Paris][pyarrow]")
    if kind == "str-zoned":
        return aware.dt.tz_convert("Europe/Paris").map(lambda s: s.isoformat()).astype(object)
    return aware.dt.tz_convert(kind) if kind != "UTC" else aware


def exact_times(column: pd.Series) -> tuple[str, list]:
    """Each value as an exact number, and what it is: numbers, naive or aware datetimes."""
    values = column.astype(object).tolist()
    if isinstance(values[0], str):
        values = [pd.Timestamp(v) for v in values]
    if isinstance(values[0], pd.Timestamp | dt.datetime):
        aware = values[0].tzinfo is not None
        return ("aware" if aware else "naive"), [pd.Timestamp(v).value for v in values]
    return "numbers", [Fraction(v.item() if hasattr(v, "item") else v) for v in values]


ID_KINDS = ["int64", "int32", "float64", "object", "Int64", "int64[pyarrow]", "category", "str",
            "category-str", "bool"]


def id_column(ids: list[int], kind: str) -> pd.Series:
    if kind == "str":
        return pd.Series([str(i) for i in ids], dtype=object)
    if kind == "category-str":
        return pd.Series([str(i) for i in ids]).astype("category")
    if kind == "bool":
        return pd.Series([bool(i % 2) for i in ids])
    if kind == "object":
        return pd.Series(ids, dtype=object)
    if kind == "category":
        return pd.Series(ids).astype("category")
    return pd.Series(ids).astype(kind)


def id_family(kind: str) -> str:
    return {"str": "strings", "category-str": "strings", "bool": "booleans"}.get(kind, "numbers")


@st.composite
def mixed_dtype_case(draw):
    n_fit, n_query = draw(st.integers(1, 12)), draw(st.integers(1, 8))
    kinds = st.sampled_from(NUMERIC + DATETIME)
    base, step = BASES[draw(st.sampled_from(sorted(BASES)))], draw(st.sampled_from([1, 64, 100]))
    fit_raw = draw(st.lists(st.integers(0, 6), min_size=n_fit, max_size=n_fit))
    query_raw = draw(st.lists(st.integers(0, 7), min_size=n_query, max_size=n_query))
    users = st.integers(0, 2)
    fit = pd.DataFrame({
        "user_id": draw(st.lists(users, min_size=n_fit, max_size=n_fit)),
        "item_id": id_column(draw(st.lists(st.integers(0, 5), min_size=n_fit, max_size=n_fit)),
                             "int64"),
        "time": time_column(fit_raw, draw(kinds), base, step),
    })
    id_kind = draw(st.sampled_from(ID_KINDS))
    query = pd.DataFrame({
        "user_id": draw(st.lists(users, min_size=n_query, max_size=n_query)),
        "item_id": id_column(draw(st.lists(st.integers(0, 6), min_size=n_query,
                                           max_size=n_query)), id_kind),
        "time": time_column(query_raw, draw(kinds), base, step),
    })
    return fit, query, id_kind, draw(st.integers(1, 4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mixed_dtype_case())
def test_mixed_time_and_id_dtypes_give_a_clear_error_or_the_exact_histories(case):
    fit, query, id_kind, max_len = case
    t = SequenceFeatureTransformer(history_cols=("item_id",), max_len=max_len).fit(fit)
    fit_family, fit_times = exact_times(fit["time"])
    family, times = exact_times(query["time"])
    comparable = fit_family == family
    same_ids = id_family(id_kind) == "numbers"
    try:
        out = t.transform(query)
    except (TypeError, ValueError) as error:
        assert "'time'" in str(error) or "'item_id'" in str(error), error
        # refusing is only allowed where no exact answer exists (or ids changed type)
        numbers_both = comparable and family == "numbers"
        assert not (comparable and same_ids) or numbers_both, error
        if numbers_both and same_ids:  # ints vs floats: only where float64 is inexact
            ints = [v for v in (*fit_times, *times) if v.denominator == 1]
            assert any(abs(v) > 2**53 for v in ints) or any(
                v.denominator != 1 for v in times), error
        return
    assert comparable and same_ids, "mixed zones, kinds or id types were compared"
    # the reference: each query's user's behaviours strictly before it, most recent first
    vocab = sorted(set(fit["item_id"].tolist()))
    codes = [vocab.index(i) + 2 for i in fit["item_id"]]
    for row, (user, when) in enumerate(zip(query["user_id"], times, strict=True)):
        earlier = [(fit_times[j], j) for j in range(len(fit))
                   if fit["user_id"].iloc[j] == user and fit_times[j] < when]
        history = [codes[j] for _, j in sorted(earlier, reverse=True)][:max_len]
        got = out[[f"hist_item_id_{k}" for k in range(max_len)]].iloc[row].tolist()
        assert got == history + [0] * (max_len - len(history)), (row, got, history)
        assert out["hist_len"].iloc[row] == len(history)
        value = query["item_id"].iloc[row]
        assert out["item_id"].iloc[row] == (vocab.index(value) + 2 if value in vocab else 1)


# ------------------------------------------- a request's time (score_candidates' time=)
@pytest.mark.parametrize("value", [
    5, -3, 2**63, 2**64 - 1, 10**30, 2.5, float("inf"), np.int32(4), np.uint64(2**64 - 1),
    np.float32(1.5), True, np.bool_(False), "2024-01-01", "2024-01-01T00:00:00+02:00",
    pd.Timestamp("2024-01-01", tz="UTC"), np.datetime64("2024-01-01"), dt.timedelta(1),
    decimal.Decimal("1.5"),
], ids=repr)
def test_a_request_time_reads_as_a_column_holding_it(value):
    """read_time's scalar shortcut gives what read_times gives the one-value column:
    the same numbers and dtype, or the same error."""
    from sklearn_din._times import read_time, read_times

    def outcome(function, argument):
        try:
            numbers, dtype = function(argument, "time")
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)
        return numbers.dtype, numbers.tolist(), dtype

    assert outcome(read_time, value) == outcome(read_times, pd.Series([value]))
