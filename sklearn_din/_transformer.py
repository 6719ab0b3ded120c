"""SequenceFeatureTransformer: interaction log -> DIN's integer input columns."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from ._behaviour_store import BehaviourStore, _distinct_sorted
from ._layout import (  # the column convention the output follows
    _FIRST_KNOWN,
    HIST_LEN_COL,
    PADDING,
    RECENCY_FEATURE,
    RECENCY_OCTAVES,
    UNKNOWN,
    USER_COL,
    context_column,
    history_column,
)
from ._memory import empty_array
from ._messages import logger, warn
from ._progress import Progress
from ._times import (
    FLOAT64,
    INT64,
    LEGACY_DATETIME,
    align_times,
    read_times,
    time_kind,
)
from ._validation import (
    binary_positive_mask,
    check_columns_present,
    check_dataframe,
    check_no_missing,
    value_kind,
)

# Rows encoded and given histories at a time (and reported on with verbose=1).
TRANSFORM_CHUNK_ROWS = 1 << 20
# Every history position is two or more output columns: beyond this, the wide layout
# (and the int32 block holding it) stops being a sensible representation.
MAX_LEN_LIMIT = 10_000


class UnknownUsersWarning(UserWarning):
    """Most rows given to transform belong to users the transformer has never seen.

    Examples
    --------
    >>> import pandas as pd
    >>> import pytest
    >>> from sklearn_din import SequenceFeatureTransformer, UnknownUsersWarning
    >>> log = pd.DataFrame({"user_id": range(40), "item_id": 1, "cate_id": 1, "time": 1})
    >>> t = SequenceFeatureTransformer().fit(log[log.user_id < 20])
    >>> with pytest.warns(UnknownUsersWarning):
    ...     _ = t.transform(log[log.user_id >= 20])
    """


def _smallest_step(times: np.ndarray) -> float:
    """Smallest positive difference between two distinct times (1 when there is none)."""
    steps = np.diff(_distinct_sorted(times.astype(np.float64)))
    return float(steps.min()) if len(steps) else 1.0


# Cells (rows x max_len) transform gives histories and recency buckets at a time: the
# block's temporaries (1 MB of float times at this size) stay in the CPU's cache through
# the passes over them and are reused from the heap, instead of being fresh, page-faulting
# allocations of the whole chunk. 2,621 rows at max_len=50: 20% faster than 16,384.
HISTORY_BLOCK_CELLS = 1 << 17


def recency_buckets(query_times: np.ndarray, behaviour_times: np.ndarray,
                    unit: float, out: np.ndarray | None = None,
                    keep: np.ndarray | None = None) -> np.ndarray:
    """Bucket ``2 + floor(log2(gap / unit))`` of each behaviour's gap to its row; 0 for padding.

    ``behaviour_times`` is (n_rows, max_len) with NaN at padding positions; every real
    behaviour is strictly before its row, so each gap is positive. The buckets are written
    into ``out`` (an int32 array of that shape, or a view of one) when given. With
    ``keep`` (that shape, bool or 0/1: true at real behaviours) the other positions are
    padding whatever ``behaviour_times`` holds there.
    """
    gap = np.subtract(query_times.astype(np.float64)[:, None], behaviour_times)
    padding = np.isnan(gap) if keep is None else None
    if unit != 1.0:
        gap /= unit
    # floor(log2(r)) + 1 is frexp's exponent, exactly and without a logarithm. Gaps are
    # never negative, and below one unit (exponent <= 0, 0 for a gap of 0) they share the
    # bucket of one unit: the clip's lower bound.
    octave = np.frexp(gap, out=(gap, None))[1].astype(np.int32, copy=False)
    np.clip(octave, 1, RECENCY_OCTAVES, out=octave)
    octave += _FIRST_KNOWN - 1
    if padding is not None:
        octave[padding] = PADDING
        if out is None:
            return octave
        out[...] = octave
        return out
    # PADDING is 0: multiplying by the mask of real positions pads and writes in one pass.
    return np.multiply(octave, keep, out=out)


def _codes(vocabulary: pd.Index, values: pd.Series) -> np.ndarray:
    """Codes of ``values``: position in the vocabulary + 2, or UNKNOWN."""
    # get_indexer gives -1 for values not in the vocabulary: -1 + 2 == UNKNOWN.
    return (vocabulary.get_indexer(values) + _FIRST_KNOWN).astype(np.int32)


def _sorted_unique(values: pd.Series) -> np.ndarray:
    unique = pd.unique(values)
    try:
        return np.sort(unique)
    except TypeError:  # mixed types that do not compare: keep first-seen order
        return np.asarray(unique)


class SequenceFeatureTransformer(TransformerMixin, BaseEstimator):
    """Encode ids and build each row's behaviour history, strictly before the row's time.

    Turns an interaction DataFrame (one row per user, item and time, with item
    attributes such as a category) into the integer columns that
    :class:`DINClassifier` reads: the encoded user, item and attribute columns,
    one block of columns per history feature holding the user's most recent
    earlier behaviours, and ``hist_len``. Histories only ever contain behaviours
    *strictly earlier* than the row's own time, so the label of a row (or of any
    later row) can never leak into its features.

    Parameters
    ----------
    user_col : str, default="user_id"
        Column identifying the user whose history is built.
    item_col : str, default="item_id"
        Column of the candidate item; must be one of ``history_cols``.
    time_col : str, default="time"
        Column of event times: numbers (e.g. unix seconds) or datetimes. It is
        consumed here and does not appear in the output.
    history_cols : tuple of str, default=("item_id", "cate_id")
        Columns whose per-user history is built: the item column and the item
        attributes that travel with it.
    max_len : int, default=50
        Number of most recent behaviours kept per row (at most 10,000); shorter
        histories are padded with 0.
    recency : bool, default=True
        Give each history position its recency: ``hist_gap_<k>`` holds the
        bucket of the time from behaviour ``k`` to the row, ``2 + floor(log2(gap /
        unit))`` (0 = padding), ``unit`` being the smallest step between two stored
        times, learnt in fit (``recency_unit_``). DINClassifier embeds it and feeds
        it to the attention, which can then weigh recent behaviours more; the
        pooled base model sums its embeddings like any history feature.
    categorical_cols : tuple of str, default=()
        Other categorical columns of the rows (device, city, page, ...), of any
        type: each is encoded like the ids (0 padding, 1 unknown, known values from
        2, learnt from every row in fit) and written as ``ctx_<col>``, which
        :class:`DINClassifier` embeds with no further configuration.
    verbose : int, default=0
        With 1, a transform of more than a million rows shows its progress: a
        bar in a terminal, otherwise a line at every tenth of the rows (standard
        error).

    Attributes
    ----------
    vocabularies_ : dict of str -> ndarray
        Known values of the user, item, history and categorical columns (by
        their input names). The value at
        position ``i`` of a column's vocabulary is encoded as ``i + 2``;
        0 is padding and 1 stands for a value not seen during fit.
    n_behaviours_ : int
        Number of behaviours stored (the clicks, or every row when fit without y).
    behaviour_store_ : BehaviourStore
        The stored behaviours, sorted by user and time (at the first look-up after
        ``fit`` or ``partial_fit``: adding chunks does not re-sort).
    time_kind_ : {"numeric", "datetime"}
        Kind of the time column seen in fit; transform expects the same kind.
    time_dtype_ : {"int64", "float64", "datetime64[ns]", "datetime64[ns, UTC]"}
        How the times seen in fit are compared: integers, floats, tz-naive datetimes
        or tz-aware ones (as UTC instants). Later times must compare with them
        exactly: floats against integer times, integers beyond 2**53 against float
        times, naive against aware datetimes (and the reverse) are refused where
        they would not.
    n_features_in_ : int
        Number of columns seen in fit.
    feature_names_in_ : ndarray of str
        Columns seen in fit.

    See Also
    --------
    DINClassifier : The classifier that consumes this transformer's output.

    Notes
    -----
    Output columns, in order: the user as ``user_id`` (whatever ``user_col``
    is, so that the classifier finds it with its defaults), ``item_col``, the
    other ``history_cols``; then for each history column ``c`` the block
    ``hist_c_0, ..., hist_c_{max_len-1}`` (``_0`` = most recent); then
    ``hist_len``; then ``ctx_<col>`` for each of ``categorical_cols``; then
    every other input column, unchanged. Fit with ``y``
    stores only the rows with a positive label (clicks) as behaviours; fit
    without ``y`` stores every row (a pure interaction log).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_din import SequenceFeatureTransformer
    >>> log = pd.DataFrame({"user_id": ["u", "u", "u", "v"],
    ...                     "item_id": ["a", "b", "c", "a"],
    ...                     "cate_id": ["x", "y", "x", "x"],
    ...                     "time": [1, 2, 3, 1]})
    >>> out = SequenceFeatureTransformer(max_len=2).fit_transform(log)
    >>> out[["user_id", "item_id", "hist_item_id_0", "hist_item_id_1", "hist_len"]]
       user_id  item_id  hist_item_id_0  hist_item_id_1  hist_len
    0        2        2               0               0         0
    1        2        3               2               0         1
    2        2        4               3               2         2
    3        3        2               0               0         0
    """

    _parameter_constraints: dict = {
        "user_col": [str],
        "item_col": [str],
        "time_col": [str],
        "history_cols": [tuple, list],
        "max_len": [Interval(Integral, 1, MAX_LEN_LIMIT, closed="both")],
        "recency": ["boolean"],
        "categorical_cols": [tuple, list],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        time_col: str = "time",
        history_cols: tuple[str, ...] = ("item_id", "cate_id"),
        max_len: int = 50,
        recency: bool = True,
        categorical_cols: tuple[str, ...] = (),
        verbose: int = 0,
    ) -> None:
        self.user_col = user_col
        self.item_col = item_col
        self.time_col = time_col
        self.history_cols = history_cols
        self.max_len = max_len
        self.recency = recency
        self.categorical_cols = categorical_cols
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )
        if isinstance(self.max_len, bool):
            raise InvalidParameterError(
                f"The 'max_len' parameter of {type(self).__name__} must be a positive int, "
                f"got {self.max_len!r}."
            )
        cols = list(self.history_cols)
        if not cols or not all(isinstance(c, str) for c in cols):
            raise ValueError(
                "history_cols must be a non-empty tuple of column names, "
                f"got {self.history_cols!r}."
            )
        if len(set(cols)) != len(cols):
            raise ValueError(f"history_cols has duplicates: {self.history_cols!r}.")
        if self.item_col not in cols:
            raise ValueError(
                f"item_col {self.item_col!r} must be one of history_cols {self.history_cols!r}."
            )
        if RECENCY_FEATURE in cols:
            raise ValueError(f"history_cols cannot hold {RECENCY_FEATURE!r}: the name of the "
                             "recency feature.")
        for name in ("user_col", "time_col"):
            if getattr(self, name) in cols:
                raise ValueError(f"{name} {getattr(self, name)!r} cannot be in history_cols.")
        if self.user_col == self.time_col:
            raise ValueError("user_col and time_col must be different columns.")
        categorical = list(self.categorical_cols)
        if not all(isinstance(c, str) for c in categorical):
            raise ValueError(
                f"categorical_cols must be column names, got {self.categorical_cols!r}."
            )
        if len(set(categorical)) != len(categorical):
            raise ValueError(f"categorical_cols has duplicates: {self.categorical_cols!r}.")
        taken = sorted(set(categorical) & {*cols, self.user_col, self.time_col})
        if taken:
            raise ValueError(f"categorical_cols {taken} are already user, time or history "
                             "columns.")

    @property
    def _id_cols(self) -> list[str]:
        attributes = [c for c in self.history_cols if c != self.item_col]
        return [self.user_col, self.item_col, *attributes]

    @property
    def _vocabulary_cols(self) -> list[str]:
        """The columns encoded with a vocabulary: the ids, then the categorical columns."""
        return [*self._id_cols, *self.categorical_cols]

    def _check_X(self, X: object, method: str) -> pd.DataFrame:
        X = check_dataframe(X, who=f"{type(self).__name__}.{method}")
        required = [*self._vocabulary_cols, self.time_col]
        check_columns_present(X, required, who=f"{type(self).__name__}.{method}")
        check_no_missing(X, required, who=f"{type(self).__name__}.{method}")
        return X

    # ------------------------------------------------------------- encoding
    def _encode(self, values: pd.Series, col: str, vocabularies: dict | None = None) -> np.ndarray:
        vocab = (self.vocabularies_ if vocabularies is None else vocabularies)[col]
        return _codes(pd.Index(vocab), values)

    def _behaviours(
        self, X: pd.DataFrame, y: object, vocabularies: dict, method: str
    ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """Time dtype, then encoded users, times and codes of the rows that are behaviours.

        Reads ``self`` only: every check runs before fit/partial_fit change any state.
        """
        if method == "partial_fit":
            times, kind = self._times_like_fit(X, stored=True), self._fit_time_dtype()
        else:
            times, kind = read_times(X[self.time_col], self.time_col)
        rows = np.ones(len(X), dtype=bool)
        if y is not None:
            rows = binary_positive_mask(y, len(X), who=f"{type(self).__name__}.{method}")
        # Only behaviours are encoded: with y, the negatives never enter the store.
        users = self._encode(X[self.user_col][rows], self.user_col, vocabularies)
        codes = np.column_stack(
            [self._encode(X[c][rows], c, vocabularies) for c in self.history_cols]
        )
        return kind, users, times[rows], codes

    # ------------------------------------------------------------------- API
    def fit(self, X: pd.DataFrame, y: object = None) -> SequenceFeatureTransformer:
        """Learn the vocabularies and store the users' behaviours.

        Parameters
        ----------
        X : DataFrame
            Interaction rows with the user, item, time and history columns.
        y : array-like of shape (n_rows,), default=None
            Binary labels. When given, only positive rows (clicks) become
            behaviours; when None, every row does.

        Returns
        -------
        self : SequenceFeatureTransformer
            The fitted transformer.
        """
        self._check_params()
        X = self._check_X(X, "fit")
        consumed = {*self._vocabulary_cols, self.time_col}
        clashes = sorted(set(self._created_names()) & (set(X.columns) - consumed))
        if clashes:
            raise ValueError(
                f"{type(self).__name__}.fit: input column(s) {clashes} clash with the "
                "columns this transformer creates; rename them."
            )
        vocabularies = {c: _sorted_unique(X[c]) for c in self._vocabulary_cols}
        time_dtype, users, times, codes = self._behaviours(X, y, vocabularies, "fit")
        store = BehaviourStore.from_arrays(users, times, codes)
        # All checks passed: only now does the fitted state change, all at once.
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.vocabularies_ = vocabularies
        self.time_kind_ = time_kind(time_dtype)
        self.time_dtype_ = time_dtype
        self.behaviour_store_ = store
        self.n_behaviours_ = len(store)
        self.recency_unit_ = _smallest_step(times)
        logger.info("SequenceFeatureTransformer.fit: %s behaviours of %s users stored",
                    f"{len(store):,}", f"{len(vocabularies[self.user_col]):,}")
        return self

    def partial_fit(self, X: pd.DataFrame, y: object = None) -> SequenceFeatureTransformer:
        """Add new behaviours and vocabulary without forgetting the old ones.

        Known values keep their codes; new values get the next free codes, so a
        model trained on earlier codes stays valid. Behaviours added here count
        as arriving after the stored ones with the same time.

        A call costs only its own rows: the new behaviours are appended and all
        of them are sorted once, at the next ``transform``. Calling it on each
        chunk of a log larger than memory gives every row the history ``fit`` on
        the whole log would give it (with codes numbered in order of arrival);
        see :func:`fit_stream` for the classifier.

        Parameters
        ----------
        X : DataFrame
            New interaction rows, with the columns seen in fit.
        y : array-like of shape (n_rows,), default=None
            Binary labels, as in :meth:`fit`.

        Returns
        -------
        self : SequenceFeatureTransformer
            The updated transformer.
        """
        if not hasattr(self, "behaviour_store_"):
            return self.fit(X, y)
        self._check_params()
        X = self._check_transform_input(X, "partial_fit")
        vocabularies = {}
        for col in self._vocabulary_cols:
            known = self.vocabularies_[col]
            new = _sorted_unique(X[col])
            new = new[~pd.Index(new).isin(pd.Index(known))]
            vocabularies[col] = np.concatenate([known, new]) if len(new) else known
        _, users, times, codes = self._behaviours(X, y, vocabularies, "partial_fit")
        store = self.behaviour_store_.extend(users, times, codes)
        self.vocabularies_ = vocabularies
        self.behaviour_store_ = store
        self.n_behaviours_ = len(store)
        return self

    def _fit_time_dtype(self) -> str:
        if hasattr(self, "time_dtype_"):
            return self.time_dtype_
        # Unpickled from sklearn-din 0.1.0, which recorded only the kind.
        if self.time_kind_ == "datetime":
            return LEGACY_DATETIME
        return INT64 if self.behaviour_store_.time_grid.dtype.kind in "iu" else FLOAT64

    def _times_like_fit(self, X: pd.DataFrame, stored: bool = False) -> np.ndarray:
        """X's times in the representation of fit's, compared exactly (or refused)."""
        times, dtype = read_times(X[self.time_col], self.time_col)
        return align_times(times, dtype, self._fit_time_dtype(), self.time_col, stored=stored)

    def _check_transform_input(self, X: object, method: str) -> pd.DataFrame:
        X = self._check_X(X, method)
        seen = set(self.feature_names_in_)
        if set(X.columns) != seen:
            raise ValueError(
                f"{type(self).__name__}.{method}: X must have the columns seen in fit. "
                f"Missing: {sorted(seen - set(X.columns))}; "
                f"unexpected: {sorted(set(X.columns) - seen)}."
            )
        for col in self._vocabulary_cols:
            # 5 != "5": ids of another type than in fit would all be encoded as unknown
            # (and partial_fit would give them new codes: one user split in two).
            fit_kind, kind = value_kind(self.vocabularies_[col]), value_kind(X[col])
            if fit_kind is not None and kind is not None and kind != fit_kind:
                raise TypeError(
                    f"{type(self).__name__}.{method}: column {col!r} holds {kind} but "
                    f"{fit_kind} were seen in fit, so none of its values would be known. "
                    "Give it the dtype it had in fit."
                )
        return X

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Encode ids and attach each row's history of earlier behaviours.

        Parameters
        ----------
        X : DataFrame
            Rows with the columns seen in fit.

        Returns
        -------
        X_out : DataFrame
            Integer columns (see the class notes) followed by the passed-through
            columns, with ``X``'s index and row order.
        """
        check_is_fitted(self)
        X = self._check_transform_input(X, "transform")
        times = self._times_like_fit(X)
        n_rows, n_ids, n_features = len(X), len(self._id_cols), len(self.history_cols)
        n_context = len(self.categorical_cols)
        n_history = n_features * self.max_len
        n_gap = self.max_len if self.recency else 0
        hist_len = n_ids + n_history + n_gap  # position of hist_len in the block
        # One int32 block for every created column, filled in place: no concatenation copy.
        # In ordinary pages: see _memory (a 1M-row block fills 4-6x faster on this kind of VM).
        block = empty_array((n_rows, hist_len + 1 + n_context), np.int32)
        encoded = [*self._id_cols, *[None] * (n_history + n_gap + 1),
                   *self.categorical_cols]  # the input column behind each block column
        indexes = {col: pd.Index(self.vocabularies_[col]) for col in self._vocabulary_cols}
        progress = None
        if self.verbose and n_rows > TRANSFORM_CHUNK_ROWS:
            progress = Progress(n_rows, f"[{type(self).__name__}] transform", unit="row")
        # Blocks of rows: the behaviours' float times are a small buffer reused block
        # after block, not a (rows x max_len) allocation touched once.
        step = max(1, HISTORY_BLOCK_CELLS // self.max_len)
        buffer = np.empty((min(n_rows, step), self.max_len)) if self.recency else None
        reader = self.behaviour_store_.history_reader(self.max_len, with_times=self.recency)
        for lo in range(0, max(n_rows, 1), TRANSFORM_CHUNK_ROWS):
            rows = slice(lo, min(lo + TRANSFORM_CHUNK_ROWS, n_rows))
            part = block[rows]
            for j, col in enumerate(encoded):
                if col is not None:
                    part[:, j] = _codes(indexes[col], X[col].iloc[rows])
            history = part[:, n_ids : n_ids + n_history].reshape(len(part), n_features,
                                                                   self.max_len)
            # Located all at once: the binary searches walk the stored keys in one pass.
            end, length = reader.bounds(part[:, 0], times[rows])
            part[:, hist_len] = length
            for block_lo in range(0, len(part), step):
                sub = slice(block_lo, block_lo + step)
                sub_times = times[rows][sub]
                behaviour_times = None if buffer is None else buffer[: len(sub_times)]
                reader.gather(end[sub], length[sub], history[sub], times_out=behaviour_times,
                              mask_times=False)
                if self.recency:
                    recency_buckets(sub_times, behaviour_times, self.recency_unit_,
                                    out=part[sub, n_ids + n_history : hist_len],
                                    keep=reader.keep_mask(length[sub]))
            if progress is not None:
                progress.update(len(part))
        if progress is not None:
            progress.close()
        unknown_users = int((block[:, 0] == UNKNOWN).sum())
        if n_rows >= 20 and unknown_users > n_rows / 2:
            warn(
                f"{unknown_users:,} of {n_rows:,} rows belong to users unseen in fit: they get "
                "empty histories. Cross-validating by user? Fit this transformer once on the "
                "whole log and freeze it (sklearn.frozen.FrozenEstimator).",
                UnknownUsersWarning,
            )
        n_int = block.shape[1]
        names = self.get_feature_names_out()
        # Names as Python strings (object dtype), as get_feature_names_out gives them: on
        # pandas' Arrow-backed string dtype every reader that visits the names one by one
        # (scikit-learn's feature-name check, each step's look-ups) makes a Python call
        # per name, a third of a small batch's input handling in the classifier.
        columns = pd.Index(names, dtype=object)
        out = pd.DataFrame(block, index=X.index, columns=columns[:n_int], copy=False)
        passthrough = list(names[n_int:])
        if passthrough:
            out = pd.concat([out, X[passthrough]], axis=1)
            out.columns = columns  # the passed-through names' dtype would win in concat
        return out

    def decode(self, column: str, codes: object) -> np.ndarray:
        """Raw values of the integer ``codes`` of ``column`` (a user, item, history or
        categorical column).

        Parameters
        ----------
        column : str
            One of ``user_col``, ``item_col``, ``history_cols`` or
            ``categorical_cols``, or its output name (``user_id``, ``ctx_<col>``).
        codes : array-like of int
            Codes as found in this transformer's output.

        Returns
        -------
        values : ndarray of object
            The original values; None for padding (0) and unknown (1) codes.
        """
        check_is_fitted(self)
        outputs = {USER_COL: self.user_col,
                   **{context_column(c): c for c in self.categorical_cols}}
        if column not in self.vocabularies_:
            column = outputs.get(column, column)
        if column not in self.vocabularies_:
            raise ValueError(f"decode: {column!r} is not one of {list(self.vocabularies_)}.")
        codes = np.asarray(codes, dtype=np.int64)
        vocab = np.asarray(self.vocabularies_[column], dtype=object)
        known = (codes >= _FIRST_KNOWN) & (codes < len(vocab) + _FIRST_KNOWN)
        values = np.full(codes.shape, None, dtype=object)
        values[known] = vocab[codes[known] - _FIRST_KNOWN]
        return values

    def history_times(self, X: pd.DataFrame) -> np.ndarray:
        """Times of the behaviours in each row's history, aligned with ``hist_<col>_<k>``.

        Parameters
        ----------
        X : DataFrame
            Rows with the columns seen in fit.

        Returns
        -------
        times : ndarray of shape (n_rows, max_len)
            float64 (NaN for padding) for numeric times, datetime64[ns] (NaT for
            padding) for datetimes.
        """
        check_is_fitted(self)
        X = self._check_transform_input(X, "history_times")
        times = self._times_like_fit(X)
        users = self._encode(X[self.user_col], self.user_col)
        out = self.behaviour_store_.history_times(users, times, self.max_len)
        if self.time_kind_ == "datetime":
            nat = np.isnan(out)
            out = np.where(nat, 0, out).astype(np.int64).view("datetime64[ns]")
            out[nat] = np.datetime64("NaT")
        return out

    def _created_names(self) -> list[str]:
        names = [USER_COL, *self._id_cols[1:]]
        for col in self.history_cols:
            names += [history_column(col, k) for k in range(self.max_len)]
        if self.recency:
            names += [history_column(RECENCY_FEATURE, k) for k in range(self.max_len)]
        return [*names, HIST_LEN_COL, *map(context_column, self.categorical_cols)]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Names of the output columns, in order.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored unless given, in which case it must equal the columns seen in fit.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features is not equal to feature_names_in_.")
        consumed = {*self._vocabulary_cols, self.time_col}
        passthrough = [c for c in self.feature_names_in_ if c not in consumed]
        return np.asarray(self._created_names() + passthrough, dtype=object)

    def __setstate__(self, state: dict) -> None:
        # Pickled by 0.1, before these parameters: the behaviour 0.1 had.
        state.setdefault("categorical_cols", ())
        state.setdefault("recency", False)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X must be a DataFrame: columns are found by name, so a bare 2-D array is refused.
        tags.input_tags.two_d_array = False
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        return tags
