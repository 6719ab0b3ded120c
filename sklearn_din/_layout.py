"""The column convention between the transformer and the classifier (the input contract).

The constants and column names both sides use live here: the transformer writes
frames that follow them, the classifier reads frames by them.

A DataFrame is read by name:

- ``hist_<f>_<k>`` for k = 0..L-1: feature ``f`` of the k-th most recent behaviour
  (0 = padding). Every history feature has the same L and no gap in k.
- ``<f>``: the candidate's value of each history feature ``f`` (shares ``f``'s table).
  The one history feature without a candidate column is ``gap`` (``hist_gap_<k>``,
  the recency bucket of each behaviour): a context feature with a table of its own.
- ``hist_len``: number of real history positions (optional: without it, the
  non-zero ids of the first history feature are counted).
- the user column (``user_col``): who the row belongs to; an id with its own
  embedding table when the user is embedded, otherwise no input of the network.
- the columns named in ``categorical_cols`` and every ``ctx_<name>`` column
  (SequenceFeatureTransformer's encoding of its ``categorical_cols``): other ids,
  each with its own embedding table.
- every other column: a numeric (dense) feature.

Ids are non-negative integers; 0 is padding and 1 unknown.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Ids: 0 is padding, 1 unknown, known values from 2 on.
PADDING = 0
UNKNOWN = 1
_FIRST_KNOWN = 2
HIST_LEN_COL = "hist_len"
# History feature of each behaviour's recency bucket (hist_gap_<k>); it has no candidate column.
RECENCY_FEATURE = "gap"
# Recency buckets 2 .. 2 + RECENCY_OCTAVES - 1: a gap of 2**40 units is over 30,000 years
# of seconds.
RECENCY_OCTAVES = 40
# The transformer's output user column, whatever the input's is called: the classifier's
# default user_col.
USER_COL = "user_id"
# Prefix of the transformer's output columns of its categorical_cols: the classifier
# embeds every such column.
CONTEXT_PREFIX = "ctx_"
_HIST_PATTERN = re.compile(r"^hist_(.+)_(\d+)$")

_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Embedding tables: ids are int32 in the network, and a table far larger than the ids
# the training data can hold means raw ids (hashes, database keys), not codes.
_TABLE_LIMIT = np.iinfo(np.int32).max
_TABLE_FLOOR = 1 << 22  # 4M rows (128 MB at embed_dim=8): never refused below
_TABLE_FACTOR = 64
# Numeric features the network does not standardise (standardize_numeric=False) enter the
# MLP as they are: beyond these magnitudes training degrades
# (a warning) or saturates into constant predictions (an error).
SCALE_WARNING = 1e2
SCALE_ERROR = 1e6


def history_column(feature: str, position: int) -> str:
    """Name of the column holding ``feature`` of the ``position``-th most recent behaviour."""
    return f"hist_{feature}_{position}"


def context_column(col: str) -> str:
    """Name of the output column holding the codes of the categorical input column ``col``."""
    return f"{CONTEXT_PREFIX}{col}"


@dataclass(frozen=True)
class InputLayout:
    """Which columns of a frame play which role."""

    history_features: tuple[str, ...]
    max_len: int
    has_hist_len: bool
    sparse_cols: tuple[str, ...]
    dense_cols: tuple[str, ...]
    context_features: tuple[str, ...] = ()
    user_col: str | None = None

    @property
    def all_history_features(self) -> tuple[str, ...]:
        """The features of the ``history`` input, in order: shared ones, then context ones."""
        return (*self.history_features, *self.context_features)

    @classmethod
    def from_columns(
        cls,
        columns: pd.Index,
        *,
        user_col: str | None,
        categorical_cols: tuple[str, ...],
        embed_user: bool = True,
    ) -> InputLayout:
        names = [str(c) for c in columns]
        blocks: dict[str, list[int]] = {}
        for name in names:
            match = _HIST_PATTERN.match(name)
            if match:
                blocks.setdefault(match[1], []).append(int(match[2]))
        lengths = {}
        for feature, positions in blocks.items():
            missing = sorted(set(range(max(positions) + 1)) - set(positions))
            if missing:
                raise ValueError(
                    f"history block of {feature!r} has a gap: column(s) "
                    f"{[history_column(feature, k) for k in missing]} missing."
                )
            lengths[feature] = max(positions) + 1
        if len(set(lengths.values())) > 1:
            raise ValueError(f"history blocks have different lengths: {lengths}.")
        context = tuple(f for f in blocks if f == RECENCY_FEATURE and f not in names)
        features = tuple(f for f in blocks if f not in context)
        if context and not features:
            raise ValueError(
                f"hist_{RECENCY_FEATURE}_<k> columns need item history columns beside them."
            )
        no_candidate = [f for f in features if f not in names]
        if no_candidate:
            raise ValueError(
                f"history feature(s) {no_candidate} have hist_<f>_<k> columns but no candidate "
                f"column <f>; X has columns {names[:20]}."
            )
        sparse = []
        if user_col is not None:
            if user_col not in names:
                raise ValueError(
                    f"user_col {user_col!r} is not a column of X; pass user_col=None to fit "
                    "without a user embedding."
                )
            if embed_user:
                sparse.append(user_col)
        missing_cat = [c for c in categorical_cols if c not in names]
        if missing_cat:
            raise ValueError(f"categorical_cols {missing_cat} are not columns of X.")
        roles = {*features, *context, HIST_LEN_COL, *sparse, *([user_col] if user_col else [])}
        overlap = sorted(set(categorical_cols) & roles)
        if overlap:
            raise ValueError(f"categorical_cols {overlap} are already history or user columns.")
        sparse += [c for c in categorical_cols if c not in sparse]
        sparse += [n for n in names if n.startswith(CONTEXT_PREFIX)
                   and n not in roles and n not in sparse and not _HIST_PATTERN.match(n)]
        taken = {*roles, *sparse}
        dense = tuple(n for n in names if n not in taken and not _HIST_PATTERN.match(n))
        return cls(
            history_features=features,
            max_len=next(iter(lengths.values()), 0),
            has_hist_len=HIST_LEN_COL in names,
            sparse_cols=tuple(sparse),
            dense_cols=dense,
            context_features=context,
            user_col=user_col,
        )

    @functools.cached_property
    def _role_columns(self) -> dict[str, list[str]]:
        # Built once per layout (every prediction reads it, and a history of 50 positions
        # is a hundred names); kept in the instance's __dict__, outside the dataclass's
        # fields, so equality and saved model files are as before. Not to be mutated.
        groups = {
            "candidate": list(self.history_features),
            "history": [history_column(f, k) for f in self.all_history_features
                        for k in range(self.max_len)],
            "sparse": list(self.sparse_cols),
        }
        if self.has_hist_len:
            groups["history_length"] = [HIST_LEN_COL]
        return groups

    def _groups(self) -> dict[str, list[str]]:
        """The id columns by role, in the order the network reads them."""
        return self._role_columns

    @functools.cached_property
    def _id_names(self) -> pd.Index:
        # Every id column, role after role, as Python strings: a list would become an
        # Arrow-backed string Index at every look-up (pandas 3), and object names match
        # SequenceFeatureTransformer's output columns without a conversion.
        return pd.Index([c for cols in self._groups().values() for c in cols], dtype=object)

    def check(self, X: pd.DataFrame, who: str) -> dict[str, np.ndarray]:
        """Ids must be finite non-negative integers and dense columns numbers.

        Returns the id matrices of X by role (see :meth:`id_arrays`), read once for the
        checks, so that :meth:`to_arrays` and :meth:`vocab_sizes` need not read them
        again; a frame made by SequenceFeatureTransformer is read without copying.
        """
        groups = self._groups()
        views = self._block_views(X)
        # One block of one integer numpy dtype (SequenceFeatureTransformer's output) can
        # hold neither missing values nor non-numbers: the per-column dtype checks would
        # find nothing there.
        if views is None or any(v.dtype.kind not in "iu" for v in views.values()):
            self._check_id_dtypes(X, groups, who)
        ids = self._id_arrays(X, views)
        self._check_id_values(ids, groups, who)
        if not self.dense_cols:  # DIN's usual input: nothing below to check (0.4 ms a call)
            return ids
        self._check_dense(X, who)
        return ids

    @staticmethod
    def _check_id_dtypes(X: pd.DataFrame, groups: dict[str, list[str]], who: str) -> None:
        """Id columns must be numbers without missing values."""
        dtypes = dict(zip(X.columns, X.dtypes, strict=True))
        numeric = {t: pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
                   for t in set(dtypes.values())}
        for cols in groups.values():
            non_numeric = [c for c in cols if not numeric[dtypes[c]]]
            if non_numeric:
                raise TypeError(
                    f"{who}: id column(s) {non_numeric[:10]} must hold integer codes (as made "
                    "by SequenceFeatureTransformer), got non-numeric dtype(s)."
                )
            if any(dtypes[c].kind not in "iu" for c in cols):  # floats or nullable: may be NA
                missing = [c for c in cols if X[c].isna().any()]
                if missing:
                    raise ValueError(
                        f"{who}: id column(s) {missing[:10]} have missing values (NaN/NA)."
                    )

    @staticmethod
    def _check_id_values(ids: dict[str, np.ndarray], groups: dict[str, list[str]], who: str
                         ) -> None:
        """Ids must be finite non-negative integers."""
        for role, cols in groups.items():
            values = ids[role]  # history: (n, features x positions), in its columns' order
            values = values.reshape(len(values), int(np.prod(values.shape[1:])))
            if values.dtype.kind == "f":
                bad = ~np.isfinite(values) | (values != np.round(values))
                if bad.any():
                    col = cols[int(np.argwhere(bad)[0, 1])]
                    raise ValueError(
                        f"{who}: id column {col!r} has NaN, inf or non-integer values."
                    )
            if values.size and values.dtype.kind != "u" and values.min() < 0:
                col = cols[int(np.argwhere(values < 0)[0, 1])]
                raise ValueError(f"{who}: id column {col!r} has negative values; ids are >= 0.")

    def _check_dense(self, X: pd.DataFrame, who: str) -> None:
        """Dense columns must be finite numbers within float32's range."""
        dense = X[list(self.dense_cols)]
        missing = dense.columns[dense.isna().any().to_numpy()].tolist()
        if missing:
            raise ValueError(f"{who}: numeric column {missing[0]!r} has NaN or inf values.")
        non_numeric = [c for c, t in dense.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
        if non_numeric:
            raise TypeError(
                f"{who}: column(s) {non_numeric[:10]} are neither ids nor numbers. Encode them "
                "and name them in categorical_cols, or drop them."
            )
        numbers = dense.to_numpy(dtype=np.float64)
        if not np.isfinite(numbers).all():
            col = self.dense_cols[int(np.argwhere(~np.isfinite(numbers))[0, 1])]
            raise ValueError(f"{who}: numeric column {col!r} has NaN or inf values.")
        # The network computes in float32: larger values would become inf there.
        huge = np.abs(numbers) > _FLOAT32_MAX
        if huge.any():
            col = self.dense_cols[int(np.argwhere(huge)[0, 1])]
            raise ValueError(f"{who}: numeric column {col!r} has values beyond float32's "
                             "range (3.4e38), which the network computes in.")

    def check_table_sizes(self, history_sizes: tuple[int, ...], sparse_sizes: tuple[int, ...],
                          n_rows: int, who: str) -> None:
        """Refuse embedding tables sized by raw ids rather than by codes.

        A table needs one row per id up to the largest; an id far above what ``n_rows``
        training rows can hold (a raw user id of 10**9, a hash) would allocate gigabytes
        for rows that are never trained.
        """
        slots = [n_rows * (1 + self.max_len)] * len(history_sizes) + [n_rows] * len(sparse_sizes)
        names = [f"{f!r} (with hist_{f}_*)" for f in self.history_tables()]
        names += [repr(c) for c in self.sparse_cols]
        for name, size, n_slots in zip(names, (*history_sizes, *sparse_sizes), slots,
                                       strict=True):
            if size > _TABLE_LIMIT or (size > _TABLE_FLOOR
                                       and size > _TABLE_FACTOR * n_slots):
                raise ValueError(
                    f"{who}: id column {name} has ids up to {size - 1:,} for {n_rows:,} rows: "
                    f"its embedding table would need {size:,} rows "
                    f"({size * 32 / 2**30:.1f} GiB at embed_dim=8). The classifier needs small "
                    "dense codes: encode raw ids with SequenceFeatureTransformer (or "
                    "pd.factorize) first."
                )

    def history_tables(self) -> tuple[str, ...]:
        """The features of the ``history`` input, one embedding table each, in order."""
        first_positions = self._groups()["history"][:: max(self.max_len, 1)]
        return tuple(_HIST_PATTERN.match(name)[1] for name in first_positions)

    def id_arrays(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """X's id columns by role, unchecked: ``candidate`` (n, F), ``history``
        (n, F + G, max_len), ``sparse`` (n, S) and, with ``hist_len``,
        ``history_length`` (n, 1).

        When X stores every id column in one block of one dtype (as
        SequenceFeatureTransformer's output does), the block is read once and each role
        is a view of it: one look-up of the columns, not one per role.
        """
        return self._id_arrays(X, self._block_views(X))

    def _id_arrays(self, X: pd.DataFrame, views: dict[str, np.ndarray] | None
                   ) -> dict[str, np.ndarray]:
        """:meth:`id_arrays`, given X's :meth:`_block_views`."""
        views = views or {}
        ids = {role: views[role] if role in views else id_matrix(X, cols)
               for role, cols in self._groups().items()}
        n_features = len(self.all_history_features)
        ids["history"] = ids["history"].reshape(len(X), n_features, self.max_len)
        return ids

    def _block_views(self, X: pd.DataFrame) -> dict[str, np.ndarray] | None:
        """Each role's ids as views of one read of X's columns, when the columns they
        span share one numpy dtype; None otherwise (or without id columns)."""
        names = self._id_names
        if not len(names):
            return None
        positions = X.columns.get_indexer(names)
        if (positions < 0).any():
            return None
        lo, hi = int(positions.min()), int(positions.max())
        span = X.iloc[:, lo : hi + 1]
        kinds = set(span.dtypes)
        if len(kinds) != 1 or isinstance(next(iter(kinds)), pd.api.extensions.ExtensionDtype):
            return None
        block, start, ids = span.to_numpy(), 0, {}
        for role, cols in self._groups().items():
            at = positions[start : start + len(cols)] - lo
            start += len(cols)
            contiguous = len(at) > 0 and bool((np.diff(at) == 1).all())
            ids[role] = block[:, at[0] : at[-1] + 1] if contiguous else block[:, at]
        return ids

    def vocab_sizes(self, X: pd.DataFrame, ids: dict[str, np.ndarray] | None = None
                    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Table sizes that hold every id of X (at least padding and unknown); ``ids``:
        X's :meth:`id_arrays`, when already read."""
        ids = self.id_arrays(X) if ids is None else ids
        candidate, history, sparse = ids["candidate"], ids["history"], ids["sparse"]

        def size(*arrays: np.ndarray) -> int:
            return max(max(int(a.max(initial=0)) for a in arrays) + 1, UNKNOWN + 1)

        n_shared = len(self.history_features)
        history_sizes = tuple(size(candidate[:, f], history[:, f, :]) for f in range(n_shared))
        # The recency table holds every bucket, so that gaps longer than any seen in fit
        # keep their meaning instead of becoming unknown.
        history_sizes += tuple(max(size(history[:, f, :]), _FIRST_KNOWN + RECENCY_OCTAVES)
                               for f in range(n_shared, len(self.all_history_features)))
        return history_sizes, tuple(size(sparse[:, j]) for j in range(sparse.shape[1]))

    def to_arrays(
        self, X: pd.DataFrame, history_sizes: tuple[int, ...], sparse_sizes: tuple[int, ...],
        ids: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """The network's inputs; ids beyond a table map to the unknown id.

        Ids that already fit their tables stay views of X's memory (no copy). ``ids``:
        X's :meth:`id_arrays` (as :meth:`check` returns them), when already read.
        """
        ids = self.id_arrays(X) if ids is None else ids
        history = ids["history"]
        if self.has_hist_len:
            length = ids["history_length"][:, 0]
            if length.dtype != np.int32 or (length.size and not (
                    0 <= length.min() and length.max() <= self.max_len)):
                length = length.clip(0, self.max_len)
        elif self.history_features:
            length = (history[:, 0, :] != 0).sum(axis=1)
        else:
            length = np.zeros(len(X), dtype=np.int64)
        return {
            "candidate": clip_to_tables(ids["candidate"],
                                        history_sizes[: len(self.history_features)]),
            "history": clip_to_tables(history, history_sizes),
            "history_length": length.astype(np.int32, copy=False),
            "sparse": clip_to_tables(ids["sparse"], sparse_sizes),
            "dense": X[list(self.dense_cols)].to_numpy(dtype=np.float32),
        }


@dataclass(frozen=True)
class InputState:
    """What a fit learns from its input frames: the layout, the size of every embedding
    table and how often each id occurs (for the mini-batch aware penalty).

    Learnt from one frame (``fit``), or from chunks merged one by one (``fit_stream``);
    the classifier stores its fields as ``layout_``, ``history_vocab_sizes_``,
    ``sparse_vocab_sizes_`` and ``id_frequencies_`` (and, from ``dense_moments``,
    ``dense_mean_`` and ``dense_scale_``) and turns frames into the network's arrays with
    :meth:`to_arrays`.
    """

    layout: InputLayout
    history_vocab_sizes: tuple[int, ...]
    sparse_vocab_sizes: tuple[int, ...]
    id_frequencies: list[np.ndarray]
    # Per numeric column: the rows, the sum and the sum of squares (float64, shape (3, D)),
    # which chunks add up; None in a state rebuilt from a fitted classifier.
    dense_moments: np.ndarray | None = None

    def dense_standardization(self) -> tuple[np.ndarray, np.ndarray]:
        """Each numeric column's mean and standard deviation (1 for a constant column)."""
        rows, total, squares = self.dense_moments
        n = np.maximum(rows, 1.0)
        mean = total / n
        variance = np.maximum(squares / n - mean**2, 0.0)
        scale = np.sqrt(variance)
        # A constant column (or one float32 cannot tell apart from constant) is centred only.
        scale[~(scale > 1e-6 * np.maximum(np.abs(mean), 1.0))] = 1.0
        return mean, scale

    @classmethod
    def learn(cls, layout: InputLayout, X: pd.DataFrame, who: str,
              weight: np.ndarray | None = None, check_sizes: bool = True,
              ids: dict[str, np.ndarray] | None = None,
              ) -> tuple[InputState, dict[str, np.ndarray]]:
        """The state of the (checked) frame X, and X's network arrays.

        ``check_sizes`` refuses tables sized by raw ids before any is counted; a stream
        checks its merged sizes against all its rows instead. ``ids``: what
        :meth:`InputLayout.check` returned for X.
        """
        ids = layout.id_arrays(X) if ids is None else ids
        history_sizes, sparse_sizes = layout.vocab_sizes(X, ids)
        if check_sizes:
            layout.check_table_sizes(history_sizes, sparse_sizes, len(X), who)
        inputs = layout.to_arrays(X, history_sizes, sparse_sizes, ids)
        counts = id_frequencies(inputs, history_sizes, sparse_sizes, weight)
        moments = np.zeros((3, inputs["dense"].shape[1]))
        for j, column in enumerate(inputs["dense"].T):  # a float64 copy of one column at a time
            column = column.astype(np.float64)
            moments[:, j] = len(column), column.sum(), column @ column
        return cls(layout, history_sizes, sparse_sizes, counts, moments), inputs

    def merge(self, other: InputState) -> InputState:
        """The state of both frames: the larger table sizes, the summed counts (float
        when either holds weighted counts)."""
        if other.layout != self.layout:
            raise ValueError("cannot merge the input states of different layouts.")
        sizes = [tuple(map(max, mine, theirs)) for mine, theirs in (
            (self.history_vocab_sizes, other.history_vocab_sizes),
            (self.sparse_vocab_sizes, other.sparse_vocab_sizes))]
        counts = []
        for mine, theirs in zip(self.id_frequencies, other.id_frequencies, strict=True):
            total = np.zeros(max(len(mine), len(theirs)),
                             dtype=np.result_type(mine.dtype, theirs.dtype))
            total[: len(mine)] += mine
            total[: len(theirs)] += theirs
            counts.append(total)
        moments = (None if self.dense_moments is None or other.dense_moments is None
                   else self.dense_moments + other.dense_moments)
        return InputState(self.layout, *sizes, counts, moments)

    def problem(self) -> str | None:
        """What makes this state inconsistent (as a damaged model file would), or None.

        One size per table of the layout, each above the reserved ids and addressable
        in int32; one finite, non-negative count per id of each table.
        """
        layout = self.layout
        for what, sizes, n in (
                ("history_vocab_sizes_", self.history_vocab_sizes, len(layout.history_tables())),
                ("sparse_vocab_sizes_", self.sparse_vocab_sizes, len(layout.sparse_cols))):
            if not (isinstance(sizes, tuple) and len(sizes) == n and all(
                    isinstance(s, int) and not isinstance(s, bool) and UNKNOWN < s <= _TABLE_LIMIT
                    for s in sizes)):
                return f"{what} must be {n} table sizes"
        sizes = (*self.history_vocab_sizes, *self.sparse_vocab_sizes)
        counts = self.id_frequencies
        if not (isinstance(counts, list) and len(counts) == len(sizes) and all(
                isinstance(a, np.ndarray) and a.shape == (s,) and a.dtype.kind in "iuf"
                for a, s in zip(counts, sizes, strict=True))):
            return "id_frequencies_ must hold one count per id of each table"
        if not all(bool(np.isfinite(a).all() and (a >= 0).all()) for a in counts):
            return "id_frequencies_ holds negative, NaN or inf counts"
        return None

    def check_table_sizes(self, n_rows: int, who: str) -> None:
        """See :meth:`InputLayout.check_table_sizes`."""
        self.layout.check_table_sizes(self.history_vocab_sizes, self.sparse_vocab_sizes,
                                      n_rows, who)

    def to_arrays(self, X: pd.DataFrame, ids: dict[str, np.ndarray] | None = None
                  ) -> dict[str, np.ndarray]:
        """The network's inputs of X (checked against the layout); see
        :meth:`InputLayout.to_arrays`."""
        return self.layout.to_arrays(X, self.history_vocab_sizes, self.sparse_vocab_sizes, ids)


# Rows counted at a time by id_frequencies (at max_len=50; fewer for longer histories).
FREQUENCY_CHUNK_ROWS = 1 << 16


def id_frequencies(
    inputs: dict[str, np.ndarray], history_sizes: tuple[int, ...], sparse_sizes: tuple[int, ...],
    weight: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Occurrences of each id per table: candidates and real history positions (shared and
    context features), then sparse ids.

    With row weights, each occurrence counts its row's weight (a row of weight 2 as
    two rows): float counts.
    """
    history, length = inputs["history"], inputs["history_length"]
    n_shared = inputs["candidate"].shape[1]
    counts = [np.bincount(inputs["candidate"][:, f], weights=weight, minlength=size)
              if f < n_shared else np.zeros(size, dtype=np.int64 if weight is None else float)
              for f, size in enumerate(history_sizes)]
    counts += [np.bincount(inputs["sparse"][:, j], weights=weight, minlength=size)
               for j, size in enumerate(sparse_sizes)]
    # In row chunks: the mask and the gathered ids of a whole million-row history would
    # be a transient of ~0.6x the training arrays, more than fit otherwise adds.
    positions = np.arange(history.shape[2])
    chunk_rows = max(1, FREQUENCY_CHUNK_ROWS * 50 // max(history.shape[2], 1))
    for start in range(0, len(length), chunk_rows):
        rows = slice(start, start + chunk_rows)
        valid = positions[None, :] < length[rows, None]
        weights = (None if weight is None
                   else np.broadcast_to(weight[rows, None], valid.shape)[valid])
        for f, size in enumerate(history_sizes):
            counts[f] += np.bincount(history[rows, f, :][valid], weights=weights, minlength=size)
    return counts


def clip_to_tables(values: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Ids (axis 1 = table) beyond their table's size mapped to the unknown id."""
    if values.dtype in (np.int32, np.int64):
        largest = values.max(axis=tuple(i for i in range(values.ndim) if i != 1),
                             initial=0) if values.size else np.zeros(len(sizes))
        if (largest < np.asarray(sizes)).all():
            return values  # every id fits: nothing to map, nothing to copy
    # Compare in the ids' own dtype (uint64 hashes, integral floats) before narrowing.
    limit = np.asarray(sizes).reshape((1, -1) + (1,) * (values.ndim - 2))
    return np.where(values < limit, values, UNKNOWN).astype(np.int32)


def id_matrix(X: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """``X[cols]`` as a 2-D array: a view of X's memory when X stores them side by side.

    SequenceFeatureTransformer's output holds all its id columns in one int32 block,
    so the network's inputs can be read without copying the (large) history columns.
    Nullable (extension) columns come back as float64, NA as NaN.
    """
    if not cols:
        return np.zeros((len(X), 0), dtype=np.int32)
    positions = X.columns.get_indexer(cols)
    dtypes = X.dtypes.iloc[positions]
    if any(isinstance(t, pd.api.extensions.ExtensionDtype) for t in dtypes):
        return X[cols].to_numpy(dtype=np.float64)
    side_by_side = (np.diff(positions) == 1).all() and dtypes.nunique() == 1
    frame = X.iloc[:, positions[0] : positions[-1] + 1] if side_by_side else X[cols]
    return frame.to_numpy()


def check_numeric_scale(largest: np.ndarray, dense_cols: tuple[str, ...], who: str) -> None:
    """Refuse (or warn about) numeric features too large for the MLP to learn from.

    ``largest`` is each dense column's largest magnitude in the training data. A raw
    unix time (1.7e9) as a feature trains to a loss of ~1e7 and constant predictions.
    """
    for col, value in zip(dense_cols, np.asarray(largest, dtype=np.float64), strict=True):
        advice = ("Standardise it (e.g. a StandardScaler in a ColumnTransformer), take a log "
                  "(np.log1p) or drop it; a raw timestamp belongs in the transformer's time_col.")
        if value > SCALE_ERROR:
            raise ValueError(f"{who}: numeric column {col!r} reaches {value:.3g}: unscaled "
                             "inputs this large saturate the network into constant "
                             f"predictions. {advice}")
        if value > SCALE_WARNING:
            warnings.warn(f"{who}: numeric column {col!r} reaches {value:.3g}; unscaled "
                          f"numeric inputs make the network train poorly. {advice}",
                          UserWarning, stacklevel=4)
