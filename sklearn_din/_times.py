"""Time columns as exactly comparable numbers.

A history holds the behaviours *strictly* earlier than its row, so every comparison
of two times must be exact: a time that rounds onto its row's own time drops a
behaviour, one that rounds or wraps past it leaks the future. Every dtype a time
column can have (numbers, numpy/pandas/pyarrow datetimes with or without a zone,
date strings, categoricals of these) is read here into int64 or float64 numbers
without loss, or refused; and times given to ``transform`` are brought to the
representation seen in ``fit`` exactly, or refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INT64 = "int64"
FLOAT64 = "float64"
NAIVE = "datetime64[ns]"  # int64 nanoseconds of tz-naive datetimes
AWARE = "datetime64[ns, UTC]"  # int64 nanoseconds since the epoch of tz-aware datetimes
# A model saved by sklearn-din 0.1.0 did not record whether its datetimes had a zone;
# as in 0.1.0, naive and aware times are then both accepted (naive read as UTC).
LEGACY_DATETIME = "datetime"
TIME_DTYPES = (INT64, FLOAT64, NAIVE, AWARE)

_FLOAT_EXACT_INTS = 2**53  # every integer of at most this magnitude is a float64
_ZONE_SUFFIX = r"(?:Z|[+-]\d\d(?::?\d\d)?|UTC|GMT)\s*$"


def time_kind(dtype: str) -> str:
    """"numeric" or "datetime": the kinds the transformer reports as ``time_kind_``."""
    return "numeric" if dtype in (INT64, FLOAT64) else "datetime"


def _describe(dtype: str) -> str:
    return {INT64: "integer times", FLOAT64: "float times", NAIVE: "tz-naive datetimes",
            AWARE: "tz-aware datetimes"}.get(dtype, "datetimes")


def read_time(value: object, col: str) -> tuple[np.ndarray, str]:
    """One time (a request's), as :func:`read_times` reads a column holding it.

    A plain integer or float skips building a Series: per request that is most of the
    cost of reading it.
    """
    if type(value) in (int, float) or isinstance(value, np.integer | np.floating):
        array = np.asarray([value])
        if array.dtype.kind in "iuf":  # not an int beyond uint64, which numpy keeps as object
            return _numbers(array, col)
    return read_times(pd.Series([value]), col)


def read_times(values: pd.Series, col: str) -> tuple[np.ndarray, str]:
    """The column's times as numbers, and which of ``TIME_DTYPES`` they are.

    Numbers come back as int64 or float64 (whichever holds them exactly),
    datetimes as int64 nanoseconds (UTC instants for tz-aware ones).
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):  # read the categories' values, not codes
        values = values.astype(dtype.categories.dtype)
        dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype):
        values = _from_arrow(values, col)
        dtype = values.dtype
    if isinstance(dtype, pd.PeriodDtype):
        values = values.dt.to_timestamp()
        dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _nanoseconds(values.dt.tz_convert("UTC").dt.tz_localize(None), col), AWARE
    if pd.api.types.is_datetime64_dtype(dtype):
        return _nanoseconds(values, col), NAIVE
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(f"time column {col!r} holds durations (timedelta); convert them to "
                        "numbers, e.g. with .dt.total_seconds().")
    if pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"time column {col!r} is boolean; expected numbers or datetimes.")
    if pd.api.types.is_numeric_dtype(dtype):
        return _numbers(values.to_numpy(), col)
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float"):  # numbers as objects
        numbers = pd.to_numeric(values)
        if numbers.dtype == object:
            raise ValueError(f"time column {col!r} has integers beyond the int64 range.")
        return _numbers(numbers.to_numpy(), col)
    if inferred == "decimal":
        raise TypeError(f"time column {col!r} holds Decimal objects; convert them to int or "
                        "float (a float cannot hold every decimal exactly).")
    if inferred == "boolean":
        raise TypeError(f"time column {col!r} is boolean; expected numbers or datetimes.")
    return read_times(_parse(values, col), col)


def _from_arrow(values: pd.Series, col: str) -> pd.Series:
    """A pyarrow-backed column as the numpy-backed pandas column of the same values."""
    import pyarrow as pa  # only reached for pyarrow-backed columns, so pyarrow is present

    kind = values.dtype.pyarrow_dtype
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return values.astype(f"datetime64[{kind.unit}]")
        return values.astype(pd.DatetimeTZDtype(kind.unit, kind.tz))
    if pa.types.is_date(kind):
        return values.astype("datetime64[s]" if pa.types.is_date32(kind) else "datetime64[ms]")
    if pa.types.is_duration(kind):
        raise TypeError(f"time column {col!r} holds durations; convert them to numbers.")
    if pa.types.is_decimal(kind):
        raise TypeError(f"time column {col!r} holds decimals; convert them to int or float.")
    return values  # numbers, booleans and strings are read as pandas reads them


def _nanoseconds(values: pd.Series, col: str) -> np.ndarray:
    try:
        values = values.astype("datetime64[ns]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        raise ValueError(
            f"time column {col!r} has dates outside 1677-09-22 .. 2262-04-11, which "
            "nanosecond times cannot hold; replace sentinel dates first."
        ) from None
    return values.to_numpy().view(np.int64)


def _numbers(array: np.ndarray, col: str) -> tuple[np.ndarray, str]:
    if array.dtype.kind == "c":
        raise TypeError(f"time column {col!r} holds complex numbers; expected real numbers.")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"time column {col!r} has unsigned times of 2**63 or more, which int64 cannot "
            "hold (they would wrap to negative times); subtract an offset first."
        )
    if array.dtype.kind in "iu":
        return array.astype(np.int64), INT64
    floats = array.astype(np.float64)
    if array.dtype.itemsize > 8 and not (floats == array).all():
        raise TypeError(f"time column {col!r} holds {array.dtype} values that float64 "
                        "cannot hold exactly; convert them to float64 or int64.")
    if not np.isfinite(floats).all():
        raise ValueError(f"time column {col!r} has infinite values.")
    return floats, FLOAT64


def _parse(values: pd.Series, col: str) -> pd.Series:
    """Date strings (or datetime objects) as a datetime column, naive or tz-aware as given."""
    try:
        return pd.to_datetime(values, format="mixed")
    except (ValueError, TypeError, OverflowError):
        pass  # mixed zones, or not dates at all: find out which
    try:
        parsed = pd.to_datetime(values, format="mixed", utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(
            f"time column {col!r} could not be parsed as numbers or datetimes ({exc})."
        ) from None
    # They parse once read as UTC: either several zones (instants compare exactly) or a mix
    # of times with and without a zone, where UTC would be a guess for the naive ones.
    if isinstance(values.dtype, pd.StringDtype) or pd.api.types.infer_dtype(
            values, skipna=True) == "string":
        zoned = values.astype(str).str.contains(_ZONE_SUFFIX, regex=True).to_numpy()
    else:
        zoned = np.array([getattr(v, "tzinfo", None) is not None for v in values], dtype=bool)
    if zoned.all():
        return parsed
    if not zoned.any():
        raise ValueError(f"time column {col!r} could not be parsed as numbers or datetimes "
                         "without guessing a time zone.")
    raise ValueError(
        f"time column {col!r} mixes times without a time zone (e.g. {values[~zoned].iloc[0]!r})"
        f" and with one (e.g. {values[zoned].iloc[0]!r}); pandas refuses to compare them. "
        "Give every time a zone (or none)."
    )


def align_times(times: np.ndarray, dtype: str, fit_dtype: str, col: str, *,
                stored: bool) -> np.ndarray:
    """``times`` (of ``dtype``) in the representation of the times seen in fit.

    Exact or refused: integers and floats mix only where every comparison between
    them is exact, naive and tz-aware datetimes never mix. ``stored`` times become
    behaviours (``partial_fit``); the others are only compared with stored ones.
    """
    if dtype == fit_dtype or (fit_dtype == LEGACY_DATETIME and time_kind(dtype) == "datetime"):
        return times
    if time_kind(dtype) != time_kind(fit_dtype):
        raise TypeError(
            f"time column {col!r} holds {time_kind(dtype)} values but {time_kind(fit_dtype)} "
            "values were seen in fit."
        )
    if time_kind(dtype) == "datetime":
        raise TypeError(
            f"time column {col!r} holds {_describe(dtype)} but {_describe(fit_dtype)} were "
            "seen in fit; pandas refuses to compare them (reading naive times as UTC would "
            "shift them by their zone's offset). Use Series.dt.tz_localize or "
            ".dt.tz_convert(None) to match fit."
        )
    if fit_dtype == INT64:  # float times against integer ones
        if not ((times >= -(2.0**63)) & (times < 2.0**63)).all():
            raise ValueError(f"time column {col!r} has float times beyond the int64 range of "
                             "the integer times seen in fit.")
        ceiling = np.ceil(times)
        if stored and (ceiling != times).any():
            raise ValueError(
                f"time column {col!r} has non-integer times (e.g. {times[ceiling != times][0]}) "
                "but integer times were seen in fit; a stored behaviour keeps its exact time, "
                "so cast the column to the integer times of fit (or refit with floats)."
            )
        # An integer time is strictly before t exactly when it is strictly before ceil(t).
        return ceiling.astype(np.int64)
    if (np.abs(times) > _FLOAT_EXACT_INTS).any():  # integer times against float ones
        raise ValueError(
            f"time column {col!r} has integer times beyond 2**53, which the float times seen "
            "in fit cannot be compared with exactly; give both the same dtype."
        )
    return times.astype(np.float64)
