"""Interaction logs for demos and tests, and the DIN paper's data protocol.

- :func:`make_interactions` generates a log whose next clicks depend on the
  categories of each user's recent behaviours, so attention over the history
  pays off measurably against an item-only model.
- :func:`sample_negatives` turns a log of positives into CTR rows the way the DIN
  paper does: each positive gets sampled negatives from items its user never
  interacted with, at the same time.
- :func:`leave_last_out_split` splits CTR rows by time per user: each user's last
  event is test, the one before is validation, the rest is training.
- :func:`read_interactions` reads a CSV log; :func:`iter_parquet` reads parquet
  files in chunks (with pyarrow), for logs larger than memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ._times import read_times
from ._validation import check_columns_present, check_dataframe, check_no_missing

__all__ = [
    "iter_parquet",
    "leave_last_out_split",
    "make_interactions",
    "read_interactions",
    "sample_negatives",
]

LOG_COLUMNS = ("user_id", "item_id", "time", "cate_id")


def read_interactions(path: str, columns: Sequence[str] = LOG_COLUMNS) -> pd.DataFrame:
    """Read an interaction log from a CSV file, keeping ``columns``.

    Parameters
    ----------
    path : str or path-like
        A CSV file with a header row.
    columns : sequence of str, default=("user_id", "item_id", "time", "cate_id")
        The columns to keep (the torch-rechub tutorial's by default).

    Returns
    -------
    log : DataFrame
        The file's ``columns``, in that order.

    Raises
    ------
    ValueError
        The file lacks one of ``columns``; the message names it.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_din.datasets import make_interactions, read_interactions
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> make_interactions(n_users=5, n_items=40, random_state=0).to_csv(path, index=False)
    >>> list(read_interactions(path).columns)
    ['user_id', 'item_id', 'time', 'cate_id']
    """
    log = pd.read_csv(path)
    missing = [c for c in columns if c not in log.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; expected {list(columns)}, "
                         f"found {list(log.columns)}.")
    return log[list(columns)]


def _parquet() -> object:
    """pyarrow.parquet, or an ImportError that says how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading parquet files needs pyarrow: pip install 'sklearn-din[parquet]' "
            "(or pip install pyarrow)."
        ) from None
    return pq


def _read_parquet_file(path: str | os.PathLike) -> pd.DataFrame:
    """One parquet file as a DataFrame (the arrow buffers freed as columns convert)."""
    table = _parquet().ParquetFile(path).read()
    return table.to_pandas(split_blocks=True, self_destruct=True)


def iter_parquet(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    batch_rows: int = 1_000_000,
    columns: Sequence[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Read parquet files as DataFrames of at most ``batch_rows`` rows each.

    Files are read in the order given, each in record batches with pyarrow
    (``ParquetFile.iter_batches``), so only one batch is in memory at a time
    whatever the files' sizes. Needs pyarrow (``pip install 'sklearn-din[parquet]'``).

    Parameters
    ----------
    paths : path or sequence of paths
        Parquet files with the same columns.
    batch_rows : int, default=1_000_000
        Most rows per DataFrame; a batch never spans two files.
    columns : sequence of str or None, default=None
        The columns to read, in that order; None reads them all.

    Returns
    -------
    chunks : iterator of DataFrame
        The files' rows, in file order, with a fresh RangeIndex per chunk.

    Raises
    ------
    FileNotFoundError
        A path does not exist (checked before anything is read).
    ValueError
        ``batch_rows`` is not a positive int, or a file lacks one of ``columns``;
        the message names the file and the columns.

    Examples
    --------
    >>> import os, tempfile
    >>> import pytest
    >>> _ = pytest.importorskip("pyarrow")
    >>> from sklearn_din.datasets import iter_parquet, make_interactions
    >>> path = os.path.join(tempfile.mkdtemp(), "log.parquet")
    >>> make_interactions(n_users=50, random_state=0).to_parquet(path)
    >>> [len(chunk) for chunk in iter_parquet(path, batch_rows=400)]
    [400, 400, 295]
    """
    pq = _parquet()
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    if not isinstance(batch_rows, Integral) or isinstance(batch_rows, bool) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive int, got {batch_rows!r}.")
    missing_files = [str(p) for p in paths if not os.path.isfile(p)]
    if missing_files:
        raise FileNotFoundError(f"iter_parquet: no such file(s): {missing_files[:5]}.")
    files = [pq.ParquetFile(p) for p in paths]
    if columns is not None:
        columns = list(columns)
        for path, file in zip(paths, files, strict=True):
            missing = [c for c in columns if c not in file.schema_arrow.names]
            if missing:
                raise ValueError(f"iter_parquet: {path} lacks column(s) {missing}; it has "
                                 f"{file.schema_arrow.names}.")
    return _batches(files, batch_rows, columns)


def _batches(files: list, batch_rows: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    for file in files:
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas(split_blocks=True, self_destruct=True)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and each value's position among them, for ids of any types.

    Sorted (``np.unique``) where the values compare; in order of first appearance where
    they do not (a column mixing 1 and "1", two distinct ids).
    """
    try:
        return np.unique(values, return_inverse=True)
    except TypeError:
        codes, uniques = pd.factorize(values)
        return np.asarray(uniques, dtype=object), codes


@validate_params(
    {
        "n_users": [Interval(Integral, 1, None, closed="left")],
        "n_items": [Interval(Integral, 1, None, closed="left")],
        "n_categories": [Interval(Integral, 1, None, closed="left")],
        "mean_events": [Interval(Real, 2, None, closed="left")],
        "recency_weight": [Interval(Real, 0, 1, closed="both")],
        "interest_weight": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_interactions(
    n_users: int = 2000,
    n_items: int = 1000,
    n_categories: int = 40,
    *,
    mean_events: float = 20.0,
    recency_weight: float = 0.6,
    interest_weight: float = 0.3,
    random_state: int | np.random.RandomState | None = None,
) -> pd.DataFrame:
    """Generate a click log with a planted dependence on recent behaviour.

    Each user has a few long-term interests (categories). Each next click picks its
    category from one of the user's last five clicks with probability
    ``recency_weight``, from the user's interests with probability
    ``interest_weight``, and uniformly otherwise; the item is then drawn from that
    category by popularity (Zipf). Users have a geometric number of clicks with
    mean ``mean_events`` (at least 2).

    Parameters
    ----------
    n_users : int, default=2000
        Number of users.
    n_items : int, default=1000
        Number of items.
    n_categories : int, default=40
        Number of categories; items are assigned to them uniformly.
    mean_events : float, default=20.0
        Mean number of clicks per user.
    recency_weight : float, default=0.6
        Probability that a click repeats the category of one of the last five clicks.
    interest_weight : float, default=0.3
        Probability that a click picks one of the user's long-term interests; the sum
        of both weights must be <= 1.
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible logs.

    Returns
    -------
    log : DataFrame
        Columns ``user_id, item_id, time, cate_id`` (the torch-rechub tutorial's),
        sorted by time; ``time`` is unix seconds.

    Examples
    --------
    >>> from sklearn_din.datasets import make_interactions
    >>> log = make_interactions(n_users=50, n_items=40, random_state=0)
    >>> list(log.columns)
    ['user_id', 'item_id', 'time', 'cate_id']
    """
    if min(n_users, n_items, n_categories) < 1 or n_categories > n_items:
        raise ValueError(
            "n_users, n_items and n_categories must be positive with n_categories <= n_items."
        )
    if recency_weight < 0 or interest_weight < 0 or recency_weight + interest_weight > 1:
        raise ValueError("recency_weight and interest_weight must be >= 0 and sum to <= 1.")
    rng = check_random_state(random_state)

    item_cate = np.concatenate(
        [np.arange(n_categories), rng.randint(n_categories, size=n_items - n_categories)]
    )
    # Items of each category, with Zipf popularity within the category.
    order = np.argsort(item_cate, kind="stable")
    cate_start = np.searchsorted(item_cate[order], np.arange(n_categories + 1))
    cate_size = np.diff(cate_start)

    n_events = np.maximum(2, rng.geometric(1.0 / (mean_events - 1), size=n_users) + 1)
    max_events = int(n_events.max())
    interests = rng.randint(n_categories, size=(n_users, 3))

    cates = np.zeros((n_users, max_events), dtype=np.int64)
    cates[:, 0] = interests[np.arange(n_users), rng.randint(3, size=n_users)]
    for step in range(1, max_events):  # one vectorised step over all users at a time
        draw = rng.random_sample(n_users)
        lookback = rng.randint(1, min(step, 5) + 1, size=n_users)
        recent = cates[np.arange(n_users), step - lookback]
        interest = interests[np.arange(n_users), rng.randint(3, size=n_users)]
        uniform = rng.randint(n_categories, size=n_users)
        cates[:, step] = np.where(
            draw < recency_weight,
            recent,
            np.where(draw < recency_weight + interest_weight, interest, uniform),
        )

    alive = np.arange(max_events)[None, :] < n_events[:, None]
    users = np.broadcast_to(np.arange(n_users)[:, None], alive.shape)[alive]
    event_cates = cates[alive]
    # Zipf rank within the category: rank r has weight 1 / (r + 1).
    uniform01 = rng.random_sample(len(event_cates))
    sizes = cate_size[event_cates]
    rank = np.minimum(np.floor(np.exp(uniform01 * np.log(sizes + 1.0)) - 1).astype(int), sizes - 1)
    items = order[cate_start[event_cates] + rank]

    start = rng.randint(1_300_000_000, 1_400_000_000, size=n_users)
    gaps = rng.exponential(86_400.0, size=alive.shape).cumsum(axis=1).astype(np.int64)
    times = (start[:, None] + gaps)[alive]

    log = pd.DataFrame(
        {
            "user_id": users + 1,
            "item_id": items + 1,
            "time": times,
            "cate_id": item_cate[items] + 1,
        }
    )
    return log.sort_values("time", kind="stable").reset_index(drop=True)


@validate_params(
    {
        "n_negatives": [Interval(Integral, 1, None, closed="left")],
        "user_col": [str],
        "item_col": [str],
        "item_attribute_cols": [list, tuple],
        "label_col": [str],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def sample_negatives(
    log: pd.DataFrame,
    *,
    n_negatives: int = 1,
    user_col: str = "user_id",
    item_col: str = "item_id",
    item_attribute_cols: Sequence[str] = ("cate_id",),
    label_col: str = "label",
    random_state: int | np.random.RandomState | None = None,
) -> pd.DataFrame:
    """Add sampled negatives to a log of positives, as the DIN paper does.

    For every row of ``log`` (a click), ``n_negatives`` items are drawn uniformly
    from the items that user never interacted with; each negative copies the
    positive's other columns (user, time, ...) and takes its own item's attributes.

    Parameters
    ----------
    log : DataFrame
        Positive interactions.
    n_negatives : int, default=1
        Negatives per positive.
    user_col : str, default="user_id"
        User column.
    item_col : str, default="item_id"
        Item column.
    item_attribute_cols : sequence of str, default=("cate_id",)
        Columns that describe the item (taken from the item's first row in ``log``).
    label_col : str, default="label"
        Name of the label column added (1 = positive, 0 = sampled negative).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible sampling.

    Returns
    -------
    rows : DataFrame
        Positives then negatives, stably sorted so that each positive is directly
        followed by its negatives; index reset.

    Examples
    --------
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=20, random_state=0), random_state=0)
    >>> float(rows["label"].mean())
    0.5
    """
    log = check_dataframe(log, who="sample_negatives")
    cols = [user_col, item_col, *item_attribute_cols]
    check_columns_present(log, cols, who="sample_negatives")
    check_no_missing(log, cols, who="sample_negatives")
    if not isinstance(n_negatives, Integral) or isinstance(n_negatives, bool) or n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}.")
    if label_col in log.columns:
        raise ValueError(f"sample_negatives: label_col {label_col!r} is already a column of log; "
                         "it would be overwritten.")
    if len(set(cols)) != len(cols):
        raise ValueError(f"sample_negatives: user_col, item_col and item_attribute_cols must be "
                         f"distinct columns, got {cols}.")
    rng = check_random_state(random_state)

    items, item_codes = _unique(log[item_col].to_numpy())
    users, user_codes = _unique(log[user_col].to_numpy())
    n_items = len(items)
    seen = np.unique(user_codes.astype(np.int64) * n_items + item_codes)
    # Distinct items per user (seen holds each (user, item) pair once).
    if (np.bincount(seen // n_items, minlength=len(users)) >= n_items).any() or n_items < 2:
        raise ValueError("some user interacted with every item: no negative can be sampled.")

    pos_user = np.repeat(user_codes, n_negatives).astype(np.int64)
    drawn = rng.randint(n_items, size=len(pos_user))
    while True:  # rejection sampling, vectorised: a few rounds for realistic logs
        clash = np.isin(pos_user * n_items + drawn, seen)
        if not clash.any():
            break
        drawn[clash] = rng.randint(n_items, size=int(clash.sum()))

    first_row = pd.Series(np.arange(len(log))).groupby(item_codes).first().to_numpy()
    negatives = log.iloc[np.repeat(np.arange(len(log)), n_negatives)].copy()
    negatives[item_col] = items[drawn]
    for col in item_attribute_cols:
        negatives[col] = log[col].to_numpy()[first_row[drawn]]

    positives = log.copy()
    positives[label_col] = 1
    negatives[label_col] = 0
    rows = pd.concat([positives, negatives])
    order = np.argsort(
        np.concatenate([np.arange(len(log)), np.repeat(np.arange(len(log)), n_negatives)]),
        kind="stable",
    )
    return rows.iloc[order].reset_index(drop=True)


@validate_params({"user_col": [str], "time_col": [str]}, prefer_skip_nested_validation=True)
def leave_last_out_split(
    rows: pd.DataFrame, *, user_col: str = "user_id", time_col: str = "time"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows per user by time: last event -> test, the one before -> validation.

    An event is a distinct (user, time), so a positive and its sampled negatives
    stay together. Users with one event keep it in training; users with two give
    their last to test and none to validation.

    Parameters
    ----------
    rows : DataFrame
        CTR rows (for example from :func:`sample_negatives`).
    user_col : str, default="user_id"
        User column.
    time_col : str, default="time"
        Time column (numbers, datetimes or date strings).

    Returns
    -------
    train : DataFrame
        Every row before each user's last two events.
    valid : DataFrame
        Each user's second-to-last event (users with three or more events).
    test : DataFrame
        Each user's last event (users with two or more events).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_din.datasets import leave_last_out_split
    >>> rows = pd.DataFrame({"user_id": [1, 1, 1, 2], "time": [1, 2, 3, 1]})
    >>> [len(part) for part in leave_last_out_split(rows)]
    [2, 1, 1]
    """
    rows = check_dataframe(rows, who="leave_last_out_split")
    check_columns_present(rows, [user_col, time_col], who="leave_last_out_split")
    check_no_missing(rows, [user_col, time_col], who="leave_last_out_split")
    # The transformer's reading of times (numbers, datetimes, date strings), so that both
    # order events the same way.
    times = pd.Series(read_times(rows[time_col], time_col)[0], index=rows.index)
    by_user = times.groupby(rows[user_col], sort=False)
    rank = by_user.rank(method="dense", ascending=False)
    n_events = by_user.transform("nunique")
    test = (rank == 1) & (n_events >= 2)
    valid = (rank == 2) & (n_events >= 3)
    return rows[~test & ~valid], rows[valid], rows[test]
