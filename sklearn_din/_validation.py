"""Input checks shared by the transformer and the classifier.

Every check raises before any work starts and names the column or parameter
at fault, so that bad data never turns silently into a bad model.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.sparse import issparse


def check_dataframe(X: object, *, who: str, allow_empty: bool = False) -> pd.DataFrame:
    """Return ``X`` if it is a non-empty DataFrame with unique string column names."""
    if not isinstance(X, pd.DataFrame):
        sparse = " (sparse input is not supported)" if issparse(X) else ""
        raise TypeError(f"{who} expects a pandas DataFrame with named columns, got "
                        f"{type(X).__name__}{sparse}.")
    if not allow_empty and len(X) == 0:
        raise ValueError(f"{who} got an empty DataFrame (0 rows); at least one row is required.")
    duplicated = X.columns[X.columns.duplicated()].unique().tolist()
    if duplicated:
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
