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

# Cells (rows x max_len) per window copy in ``_gather``: bounds its temporaries to ~100 MB
# whatever max_len is (262,144 rows at max_len=50).
_CHUNK_CELLS = 50 << 18
# Behaviours appended after the sorted part that a one-user look-up scans (tens of
# microseconds) before it sorts everything once instead.
_RECENT_SCAN_ROWS = 1 << 16


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    # Sort-based distinct values: several times faster than np.unique's hash path here.
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


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
        grid = _distinct_sorted(np.concatenate([_distinct_sorted(t) for _, t, _ in parts]))
        stride = np.int64(len(grid) + 1)
        largest = max((int(u.max()) for u, _, _ in parts if len(u)), default=0)
        if largest >= np.iinfo(np.int64).max // stride:
            raise OverflowError("too many users x distinct times to index the behaviour store")
        keys = np.concatenate([u.astype(np.int64) * stride + np.searchsorted(grid, t, side="left")
                               for u, t, _ in parts])
        # A stable sort: behaviours with equal (user, time) keep their arrival order, so
        # the one that arrived last counts as the most recent.
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        n_features = parts[0][2].shape[1]
        by_feature = np.empty((n_features, len(keys)), dtype=np.int32)
        for f in range(n_features):  # one feature at a time: a single (n,) temporary
            by_feature[f] = np.concatenate([c[:, f] for _, _, c in parts])[order]
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

    def histories(
        self,
        users: np.ndarray,
        times: np.ndarray,
        max_len: int,
        out: np.ndarray | None = None,
        times_out: np.ndarray | None = None,
        stored_times: np.ndarray | None = None,
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
        stored_times : ndarray of shape (n_behaviours,), float64, optional
            ``times.astype(np.float64)``, for a caller that asks for ``times_out`` block
            after block: computed once by it instead of on every call.

        Returns
        -------
        codes : ndarray of shape (n_queries, n_features, max_len), int32
            ``codes[i, f, 0]`` is feature ``f`` of query ``i``'s most recent earlier
            behaviour; positions past the history's length hold 0 (padding).
        lengths : ndarray of shape (n_queries,), int32
            Number of behaviours kept (at most ``max_len``).
        """
        n, n_features = len(users), self.codes.shape[0]
        if out is None:
            out = np.zeros((n, n_features, max_len), dtype=np.int32)
        end, length = self._bounds(users, times, max_len)
        for f in range(n_features):
            self._gather(self.codes[f], end, length, max_len, out[:, f, :])
        if times_out is not None:
            if stored_times is None:
                stored_times = self.times.astype(np.float64)
            self._gather(stored_times, end, length, max_len, times_out, fill=np.nan)
        return out, length.astype(np.int32)

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
        end, length = self._bounds(users, times, max_len)
        out = np.zeros((len(users), max_len), dtype=np.float64)
        self._gather(self.times.astype(np.float64), end, length, max_len, out, fill=np.nan)
        return out

    def _bounds(
        self, users: np.ndarray, times: np.ndarray, max_len: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each query: one past its latest earlier behaviour, and its history length."""
        n = len(users)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        stride = np.int64(len(self.time_grid) + 1)
        u = users.astype(np.int64) * stride
        # Sorted needles make searchsorted walk the keys forwards instead of jumping around.
        query_keys = u + np.searchsorted(self.time_grid, times, side="left")
        order = np.argsort(query_keys, kind="stable")
        end = np.empty(n, dtype=np.int64)
        end[order] = np.searchsorted(self.keys, query_keys[order], side="left")
        start = np.empty(n, dtype=np.int64)
        start[order] = np.searchsorted(self.keys, u[order], side="left")
        return end, np.minimum(end - start, max_len)

    @staticmethod
    def _gather(
        values: np.ndarray,
        end: np.ndarray,
        length: np.ndarray,
        max_len: int,
        out: np.ndarray,
        fill: float = 0,
    ) -> None:
        """out[i, k] = values[end[i] - 1 - k] for k < length[i], else ``fill``."""
        # Each history is a run of consecutive stored behaviours read backwards from `end`:
        # a window into the reversed codes, so one row copy per query instead of a gather
        # per position; positions past the history's length are zeroed by a mask. Memory is
        # linear in max_len: the temporaries hold one chunk of rows, sized by cells.
        n_stored = len(values)
        first = max_len + n_stored - end  # where values[end - 1] lands in the reversed array
        positions = np.arange(max_len)
        pad = np.full(max_len, fill, dtype=values.dtype)
        windows = sliding_window_view(np.concatenate([pad, values[::-1], pad]), max_len)
        chunk_rows = max(1, _CHUNK_CELLS // max_len)
        for lo in range(0, len(end), chunk_rows):
            hi = min(lo + chunk_rows, len(end))
            window, keep = windows[first[lo:hi]], positions < length[lo:hi, None]
            # Multiplying by the 0/1 mask is about twice as fast as np.where for codes, and
            # writing straight into `out` saves a temporary and a copy of the whole chunk.
            if fill == 0:
                np.multiply(window, keep, out=out[lo:hi])
            else:  # in place: np.where would build the chunk and copy it again
                np.copyto(out[lo:hi], fill)
                np.copyto(out[lo:hi], window, where=keep)
