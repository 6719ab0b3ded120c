"""Input checks shared by the transformer and the classifier.

Every check raises before any work starts and names the column or parameter
at fault, so that bad data never turns silently into a bad model.
"""

from __future__ import annotations

from collections.abc import Iterable

import narwhals as nw
import numpy as np
import pandas as pd
from scipy.sparse import issparse


def is_dataframe(X: object) -> bool:
    """Whether ``X`` is a data frame :func:`to_pandas` converts (pandas, polars, ...)."""
    return isinstance(X, pd.DataFrame) or isinstance(
        nw.from_native(X, eager_only=True, pass_through=True), nw.DataFrame)


def to_pandas(X: object) -> object:
    """``X`` as a pandas DataFrame when it is a data frame of another library (polars,
    pyarrow, ... : whatever narwhals reads eagerly); anything else unchanged."""
    if isinstance(X, pd.DataFrame):
        return X
    frame = nw.from_native(X, eager_only=True, pass_through=True)
    return frame.to_pandas() if isinstance(frame, nw.DataFrame) else X


def has_str_names(columns: pd.Index) -> bool:
    """Whether every column name is a str (as scikit-learn requires of named columns).

    pandas' string dtype holds only strings and missing values: checked without
    visiting each name, which on its Arrow-backed form is a Python call per name.
    """
    if columns.dtype != object and pd.api.types.is_string_dtype(columns.dtype):
        return not columns.hasnans
    return all(isinstance(c, str) for c in columns)


def check_dataframe(X: object, *, who: str, allow_empty: bool = False) -> pd.DataFrame:
    """``X`` as a pandas DataFrame (from any frame :func:`to_pandas` converts), if it is
    non-empty with unique column names."""
    X = to_pandas(X)
    if not isinstance(X, pd.DataFrame):
        sparse = " (sparse input is not supported)" if issparse(X) else ""
        raise TypeError(
            f"{who} expects a DataFrame with named columns (pandas, polars, pyarrow, ...), "
            f"got {type(X).__name__}{sparse}."
        )
    if not allow_empty and len(X) == 0:
        raise ValueError(f"{who} got an empty DataFrame (0 rows); at least one row is required.")
    if not X.columns.is_unique:  # cheap when unique: checked on every serving request
        duplicated = X.columns[X.columns.duplicated()].unique().tolist()
        raise ValueError(f"{who} got duplicated column names {duplicated}; names must be unique.")
    return X


def check_columns_present(X: pd.DataFrame, columns: Iterable[str], *, who: str) -> None:
    """Raise a ``ValueError`` listing the ``columns`` that ``X`` lacks."""
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(
            f"{who}: column(s) {missing} not found in X; X has columns {list(X.columns)}."
        )


def check_no_missing(X: pd.DataFrame, columns: Iterable[str], *, who: str) -> None:
    """Raise if any of ``columns`` holds NaN/None/NaT."""
    for col in columns:
        n_missing = int(X[col].isna().sum())
        if n_missing:
            raise ValueError(
                f"{who}: column {col!r} has {n_missing} missing value(s) (NaN/None/NaT); "
                "drop or fill them first."
            )


def binary_positive_mask(y: object, n_rows: int, *, who: str) -> np.ndarray:
    """Boolean mask of the positive rows of a binary target.

    ``y`` may hold 0/1, booleans or any two labels; with two labels that are not
    0/1 the positive label is the larger one, as in ``LabelEncoder().classes_[1]``.
    """
    y_arr = np.asarray(y)
    if y_arr.ndim != 1:
        raise ValueError(f"{who}: y must be 1-dimensional, got shape {y_arr.shape}.")
    if len(y_arr) != n_rows:
        raise ValueError(f"{who}: X has {n_rows} rows but y has {len(y_arr)}.")
    if pd.isna(y_arr).any():
        raise ValueError(f"{who}: y has missing values.")
    labels = np.unique(y_arr)
    if len(labels) > 2:
        raise ValueError(
            f"{who}: y must be binary (clicks), got {len(labels)} distinct values "
            f"{labels[:5].tolist()}{'...' if len(labels) > 5 else ''}."
        )
    if set(labels.tolist()) <= {0, 1}:
        return y_arr.astype(bool)
    if len(labels) == 1:
        raise ValueError(
            f"{who}: y has the single value {labels[0]!r}; use 0/1 or booleans to say "
            "which rows are clicks."
        )
    return y_arr == labels[1]


def check_sample_weight(sample_weight: object, n_rows: int, *, who: str,
                        allow_all_zero: bool = False) -> np.ndarray:
    """``sample_weight`` as float32 of shape (n_rows,): finite, non-negative and (unless
    ``allow_all_zero``, for one chunk of a stream) not all 0."""
    try:
        weight = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: sample_weight must hold numbers.") from None
    if weight.ndim != 1 or len(weight) != n_rows:
        raise ValueError(f"{who}: sample_weight must have shape ({n_rows},) like X's rows, "
                         f"got {weight.shape}.")
    if not np.isfinite(weight).all():
        raise ValueError(f"{who}: sample_weight has NaN or infinite values.")
    if (weight < 0).any():
        raise ValueError(f"{who}: sample_weight has negative values; weights are >= 0.")
    if n_rows and not allow_all_zero and not weight.any():
        raise ValueError(f"{who}: every sample_weight is zero: there is nothing to learn from.")
    return weight.astype(np.float32)


# What pandas' infer_dtype says of an object column -> the family its values belong to.
_INFERRED_KINDS = {
    "string": "strings", "bytes": "bytes", "boolean": "booleans",
    "integer": "numbers", "floating": "numbers", "mixed-integer-float": "numbers",
    "decimal": "numbers", "integer-na": "numbers",
    "datetime64": "datetimes", "datetime": "datetimes", "date": "datetimes",
    "timedelta64": "durations", "timedelta": "durations", "period": "periods",
}


def value_kind(values: object) -> str | None:
    """The family of ``values``: "numbers", "strings", "booleans", "datetimes", ...

    None when the values mix families (or there are none). Values of different
    families never compare equal as ids or labels (``5 != "5"``), so a column whose
    family changed since fit would match nothing that was seen.
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        return value_kind(dtype.categories)
    if dtype is not None and dtype != np.dtype(object):
        if pd.api.types.is_bool_dtype(dtype):
            return "booleans"
        if pd.api.types.is_numeric_dtype(dtype):
            return "numbers"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return "datetimes"
        if pd.api.types.is_timedelta64_dtype(dtype):
            return "durations"
        if pd.api.types.is_string_dtype(dtype):
            return "strings"
    if len(values) == 0:
        return None
    return _INFERRED_KINDS.get(pd.api.types.infer_dtype(values, skipna=True))


def label_kind(y: object) -> str | None:
    """:func:`value_kind` of labels, where booleans are numbers (True == 1, False == 0)."""
    kind = value_kind(y)
    return "numbers" if kind == "booleans" else kind
