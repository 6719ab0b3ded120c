"""Per-user behaviour sequences and point-in-time history look-ups, in numpy only.

The store keeps every behaviour (a click, or any interaction of a pure log) as
one row of integer codes, sorted by (user, time). A history look-up for a batch
of (user, time) queries is a handful of vectorised ``searchsorted`` calls and one
gather: no Python loop per row or per user.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Cells (rows x max_len) per window copy in ``HistoryReader.gather``: bounds its temporaries
# to ~100 MB whatever max_len is (262,144 rows at max_len=50).
_CHUNK_CELLS = 50 << 18
# Longest max_len for which HistoryReader.keep_mask looks masks up in a table (4 MB).
_KEEP_TABLE_LEN = 1 << 10
# Behaviours appended after the sorted part that a one-user look-up scans (tens of
# microseconds) before it sorts everything once instead.
_RECENT_SCAN_ROWS = 1 << 16


def _non_decreasing(values: np.ndarray) -> bool:
    return len(values) < 2 or bool((values[1:] >= values[:-1]).all())


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    # Sort-based distinct values: several times faster than np.unique's hash path here,
    # and a log that arrives in time order needs no sort at all.
    ordered = values if _non_decreasing(values) else np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for non-negative integers.

    Values of up to 48 bits are sorted by 16-bit digits, least significant first:
    numpy sorts 16-bit integers stably by radix, several times faster than the
    timsort it uses for wider ones.
    """
    largest = int(values.max()) if len(values) else 0
    if largest >= 1 << 48:
        return np.argsort(values, kind="stable")
    order, shift = None, 0
    while True:
        digits = (values if order is None else values[order]) >> shift
        step = np.argsort(digits.astype(np.uint16), kind="stable")  # the digit: wraps mod 2**16
        order = step if order is None else order[step]
        shift += 16
        if largest >> shift == 0:
            return order


class BehaviourStore:
    """Behaviours sorted by user code, then time, then order of arrival.

    Behaviours arrive in parts (one from ``fit``, one per ``partial_fit``) and are kept
    as they came; the parts are merged and sorted once, on the first batch look-up
    after they arrived. Adding ``k`` chunks therefore costs one sort of everything at
    the end instead of ``k`` re-sorts of a growing store. A one-user look-up
    (:meth:`user_history`, used at serving time) does not sort: it reads the sorted
    behaviours and scans the few appended since, so clicks appended one at a time
    while serving cost no re-sort until ``_RECENT_SCAN_ROWS`` of them have piled up.

    Once sorted, a behaviour costs 8 bytes of key plus 4 bytes per feature: user and
    time are not stored apart, they are read back from the key and the time grid.

    Attributes
    ----------
    keys : ndarray of shape (n_behaviours,), int64
        ``user * (len(time_grid) + 1) + rank of time``: sorted, so that one
        ``searchsorted`` finds a (user, time) position.
    time_grid : ndarray
        The distinct stored times, sorted.
    codes : ndarray of shape (n_features, n_behaviours), int32
        Encoded item and item attributes of each behaviour, one contiguous row per
        feature.
    users, times : ndarray of shape (n_behaviours,)
        Encoded user (int64) and time (int64 or float64) of each behaviour, derived
        from ``keys`` on access.
    """

    def __init__(
        self,
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        sorted_part: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        # parts: (users, times, codes of shape (n, n_features)) in arrival order, all
        # arriving after the behaviours of sorted_part, the sorted (keys, time_grid,
        # codes) triple (shared, read-only, with the store this one extends).
        self._parts = list(parts)
        self._sorted = sorted_part
        self._n = sum(len(users) for users, _, _ in self._parts)
        self._n += 0 if sorted_part is None else len(sorted_part[0])
        self._recent: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # transforms in threads must not sort twice

    @classmethod
    def from_arrays(cls, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        """Behaviours in arrival order; ``codes`` has shape (n, n_features)."""
        return cls([(users, times, codes)])

    def __len__(self) -> int:
        return self._n

    def extend(self, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        """A new store holding these behaviours and the new ones (arriving after them).

        Costs only the new part: sorting waits for the first batch look-up. This store
        is left as it is, so threads still reading it are not disturbed.
        """
        with self._lock:  # a consistent (sorted, appended) pair, even while it sorts
            recent = [self._recent] if self._recent is not None else self._parts
            return BehaviourStore([*recent, (users, times, codes)], self._sorted)

    def __getstate__(self) -> dict:
        # Pickle the sorted form: smaller, and the copy need not sort again.
        return {"_parts": [], "_sorted": self._consolidate(), "_n": self._n}

    def __setstate__(self, state: dict) -> None:
        if "keys" in state:  # pickled by sklearn-din 0.1.0: a frozen dataclass of sorted arrays
            state = {"_parts": [], "_n": len(state["keys"]),
                     "_sorted": (state["keys"], state["time_grid"], state["codes"])}
        self.__dict__.update(state)
        self._recent = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------- sorted form
    def _consolidate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            return self._consolidate_locked()

    def _consolidate_locked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._parts or self._sorted is None:
            base = [] if self._sorted is None else [
                (*self._split_keys(self._sorted[0], self._sorted[1]), self._sorted[2].T)]
            self._sorted = self._sort([*base, *self._parts])
            self._parts = []  # drop the unsorted copies: the sorted form is all there is
            self._recent = None
        return self._sorted

    @staticmethod
    def _sort(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Rank times on the grid of distinct stored times so that (user, time) folds into
        # one int64 key whatever the time unit: stored behaviour e precedes query q of the
        # same user exactly when rank(e) < rank_q, the number of stored times below t_q.
        times = _joined([t for _, t, _ in parts])
        grid = _distinct_sorted(_joined([_distinct_sorted(t) for _, t, _ in parts]))
        stride = np.int64(len(grid) + 1)
        users = _joined([u for u, _, _ in parts]).astype(np.int64, copy=False)
        largest = int(users.max()) if len(users) else 0
        if largest >= np.iinfo(np.int64).max // stride:
            raise OverflowError("too many users x distinct times to index the behaviour store")
        keys = users * stride + np.searchsorted(grid, times, side="left")
        # A stable sort: behaviours with equal (user, time) keep their arrival order, so
        # the one that arrived last counts as the most recent. Behaviours that arrived in
        # time order are in key order within each user already: sorting by user suffices.
        order = _stable_argsort(users if _non_decreasing(times) else keys)
        keys = keys[order]
        n_features = parts[0][2].shape[1]
        by_feature = np.empty((n_features, len(keys)), dtype=np.int32)
        for f in range(n_features):  # one feature at a time: a single (n,) temporary
            by_feature[f] = _joined([c[:, f] for _, _, c in parts])[order]
        return keys, grid, by_feature

    @staticmethod
    def _split_keys(keys: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        users, rank = np.divmod(keys, np.int64(len(grid) + 1))
        return users, grid[rank]

    @property
    def keys(self) -> np.ndarray:
        return self._consolidate()[0]

    @property
    def time_grid(self) -> np.ndarray:
        return self._consolidate()[1]

    @property
    def codes(self) -> np.ndarray:
        return self._consolidate()[2]

    @property
    def users(self) -> np.ndarray:
        return self._split_keys(self.keys, self.time_grid)[0]

    @property
    def times(self) -> np.ndarray:
        return self._split_keys(self.keys, self.time_grid)[1]

    @property
    def nbytes(self) -> int:
        """Bytes held by the store's arrays (sorted or not)."""
        arrays = [*(self._sorted or ()), *(a for p in self._parts for a in p)]
        return int(sum(a.nbytes for a in arrays))

    def behaviour_codes(self) -> np.ndarray:
        """The stored codes as (n_behaviours, n_features), in store order."""
        return self.codes.T

    def history_reader(self, max_len: int, *, with_times: bool = False) -> HistoryReader:
        """The sorted behaviours laid out for many :meth:`histories` look-ups at ``max_len``.

        A caller that looks up block after block of queries builds this once.
        """
        keys, grid, codes = self._consolidate()
        return HistoryReader(keys, grid, codes, max_len, with_times=with_times)

    def histories(
        self,
        users: np.ndarray,
        times: np.ndarray,
        max_len: int,
        out: np.ndarray | None = None,
        times_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each query's behaviours strictly before its time, most recent first.

        Parameters
        ----------
        users, times : ndarray of shape (n_queries,)
            Encoded user and time of each query.
        max_len : int
            Positions kept per query.
        out : ndarray of shape (n_queries, n_features, max_len), optional
            Where to write the codes (may be a strided view into a larger block).
        times_out : ndarray of shape (n_queries, max_len), float64, optional
            Where to write the behaviours' times as :meth:`history_times` gives them,
            from the same look-up (NaN at padding positions).

        Returns
        -------
        codes : ndarray of shape (n_queries, n_features, max_len), int32
            ``codes[i, f, 0]`` is feature ``f`` of query ``i``'s most recent earlier
            behaviour; positions past the history's length hold 0 (padding).
        lengths : ndarray of shape (n_queries,), int32
            Number of behaviours kept (at most ``max_len``).
        """
        reader = self.history_reader(max_len, with_times=times_out is not None)
        if out is None:
            out = np.zeros((len(users), len(reader.windows), max_len), dtype=np.int32)
        return out, reader.read(users, times, out, times_out)

    def user_history(
        self, user: int, time: float | None, max_len: int, *, with_times: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One user's behaviours strictly before ``time``, most recent first.

        The same codes as ``histories([user], [time], max_len)`` (trimmed to the real
        positions), without sorting the store: the sorted behaviours are read with two
        binary searches and the ones appended since the last sort are scanned.

        Parameters
        ----------
        user : int
            Encoded user.
        time : number or None
            The query time, in the store's time unit; None means after every stored
            behaviour (the user's latest ``max_len`` behaviours).
        max_len : int
            Positions kept.
        with_times : bool, default=False
            Also return the behaviours' times.

        Returns
        -------
        codes : ndarray of shape (n_features, length), int32
            ``codes[f, 0]`` is feature ``f`` of the most recent behaviour; ``length`` is
            at most ``max_len``.
        times : ndarray of shape (length,)
            Only with ``with_times``: the time of each of these behaviours.
        """
        with self._lock:
            if self._sorted is None or sum(len(u) for u, _, _ in self._parts) > _RECENT_SCAN_ROWS:
                self._consolidate_locked()
            if self._parts and self._recent is None:
                self._recent = tuple(np.concatenate(a) for a in zip(*self._parts, strict=True))
                self._parts = [self._recent]
            stored, recent = self._sorted, self._recent if self._parts else None
        times, codes = [], []
        if stored is not None:
            keys, grid, by_feature = stored
            stride = np.int64(len(grid) + 1)
            rank = len(grid) if time is None else np.searchsorted(grid, time, side="left")
            start = np.int64(user) * stride
            lo, hi = np.searchsorted(keys, [start, start + rank], side="left")
            lo = max(lo, hi - max_len)  # older stored behaviours are never among the kept
            times.append(grid[keys[lo:hi] - start])
            codes.append(by_feature[:, lo:hi])
        if recent is not None:
            users, recent_times, recent_codes = recent
            mine = users == user
            if time is not None:
                mine &= recent_times < time
            times.append(recent_times[mine])
            codes.append(recent_codes[mine].T)
        if recent is None:  # the stored behaviours alone are in time order already
            kept = np.ascontiguousarray(codes[0][:, ::-1][:, :max_len], dtype=np.int32)
            return (kept, times[0][::-1][:max_len]) if with_times else kept
        # Stable: behaviours at the same time keep their arrival order (stored ones first).
        all_times = np.concatenate(times)
        order = np.argsort(all_times, kind="stable")[::-1][:max_len]
        kept = np.concatenate(codes, axis=1)[:, order].astype(np.int32)
        return (kept, all_times[order]) if with_times else kept

    def history_times(self, users: np.ndarray, times: np.ndarray, max_len: int) -> np.ndarray:
        """Times of the behaviours :meth:`histories` returns, shape (n_queries, max_len).

        Padding positions hold NaN (the array is float64, so nanosecond datetimes lose
        precision below about a microsecond).
        """
        reader = HistoryReader(*self._consolidate(), max_len, with_times=True, codes_too=False)
        out = np.zeros((len(users), max_len), dtype=np.float64)
        reader.read(users, times, np.zeros((len(users), 0, max_len), dtype=np.int32), out)
        return out


def _reversed_windows(values: np.ndarray, max_len: int, fill: float) -> np.ndarray:
    """Windows of ``max_len`` into ``values`` reversed and padded with ``fill`` both sides.

    Window ``max_len + len(values) - end`` reads ``values[end - 1], values[end - 2], ...``.
    """
    pad = np.full(max_len, fill, dtype=values.dtype)
    return sliding_window_view(np.concatenate([pad, values[::-1], pad]), max_len)


class HistoryReader:
    """A behaviour store's sorted behaviours, laid out for history look-ups at one length.

    Each history is a run of consecutive stored behaviours read backwards from the
    query's position: a window into the reversed codes, so one row copy per query
    instead of a gather per position, positions past the history's length zeroed by a
    mask. The reversed copies and where each user's behaviours start are built once
    here, not once per block of queries.

    Parameters
    ----------
    keys, time_grid, codes : ndarray
        The store's sorted form (see :class:`BehaviourStore`).
    max_len : int
        Positions kept per query.
    with_times : bool, default=False
        Also lay out the behaviours' times (as float64), for ``times_out``.
    codes_too : bool, default=True
        Lay out the codes (False: times only).
    """

    def __init__(self, keys: np.ndarray, time_grid: np.ndarray, codes: np.ndarray,
                 max_len: int, *, with_times: bool = False, codes_too: bool = True) -> None:
        self.keys, self.time_grid, self.max_len = keys, time_grid, max_len
        self.stride = np.int64(len(time_grid) + 1)
        n_users = int(keys[-1] // self.stride) + 1 if len(keys) else 0
        # user_starts[u]: the first stored behaviour of user u (of a later user when u has
        # none); users from n_users on have none, and all map to the last entry, len(keys).
        self.user_starts = np.searchsorted(
            keys, np.arange(n_users + 1, dtype=np.int64) * self.stride, side="left")
        self.windows = [_reversed_windows(codes[f], max_len, 0)
                        for f in range(len(codes) if codes_too else 0)]
        self.time_windows = None
        if with_times:
            times = time_grid[keys % self.stride].astype(np.float64, copy=False)
            self.time_windows = _reversed_windows(times, max_len, np.nan)
        self._positions = np.arange(max_len)
        # _keep_rows[n]: the mask of a history of length n (for max_len up to 1,024: 4 MB).
        self._keep_rows = ((self._positions < np.arange(max_len + 1)[:, None]).astype(np.int32)
                           if max_len <= _KEEP_TABLE_LEN else None)

    def bounds(self, users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query: one past its latest earlier behaviour, and its history length."""
        if len(users) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        users = users.astype(np.int64)
        query_keys = users * self.stride + np.searchsorted(self.time_grid, times, side="left")
        # Sorted needles make searchsorted walk the keys forwards instead of jumping around.
        # Queries in time order (most logs) are in key order within each user already.
        order = _stable_argsort(users if _non_decreasing(times) else query_keys)
        end = np.empty(len(users), dtype=np.int64)
        end[order] = np.searchsorted(self.keys, query_keys[order], side="left")
        start = self.user_starts[np.minimum(users, len(self.user_starts) - 1)]
        return end, np.minimum(end - start, self.max_len)

    def read(self, users: np.ndarray, times: np.ndarray, out: np.ndarray,
             times_out: np.ndarray | None = None) -> np.ndarray:
        """Write the queries' histories into ``out`` (and their times into ``times_out``).

        ``out`` has shape (n_queries, n_features, max_len) and may be a strided view;
        ``times_out`` (n_queries, max_len) float64, NaN at padding. Returns the lengths
        (int32).
        """
        end, length = self.bounds(users, times)
        self.gather(end, length, out, times_out)
        return length.astype(np.int32)

    def gather(self, end: np.ndarray, length: np.ndarray, out: np.ndarray,
               times_out: np.ndarray | None = None, *, mask_times: bool = True) -> None:
        """:meth:`read` for queries already located by :meth:`bounds`.

        With ``mask_times=False`` the padding positions of ``times_out`` are left
        unspecified (other behaviours' times): for a caller that masks by length itself.
        """
        first = self.max_len + len(self.keys) - end  # where values[end - 1] lands reversed
        chunk_rows = max(1, _CHUNK_CELLS // max(self.max_len, 1))
        for lo in range(0, len(end), chunk_rows):
            rows = slice(lo, min(lo + chunk_rows, len(end)))
            at, keep = first[rows], self.keep_mask(length[rows])
            for f, windows in enumerate(self.windows):
                # Multiplying by the 0/1 mask is about twice as fast as np.where, and
                # writing straight into `out` saves a temporary and a copy of the block.
                np.multiply(windows[at], keep, out=out[rows, f, :])
            if times_out is None:
                continue
            if mask_times:  # in place: np.where would build the chunk and copy it
                np.copyto(times_out[rows], np.nan)
                np.copyto(times_out[rows], self.time_windows[at], where=keep.astype(bool))
            else:
                times_out[rows] = self.time_windows[at]

    def keep_mask(self, length: np.ndarray) -> np.ndarray:
        """(n, max_len) int32: 1 at the positions ``k < length`` (the real behaviours), else 0.

        int32, not bool: multiplying int32 codes by it needs no cast, twice as fast.
        """
        if self._keep_rows is not None:  # a row lookup: 3x faster than comparing
            return self._keep_rows[length]
        return (self._positions < length[:, None]).astype(np.int32)
