"""Per-user behaviour sequences and point-in-time history look-ups, in numpy only.

The store keeps every behaviour (a click, or any interaction of a pure log) as
one row of integer codes, sorted by (user, time). A history look-up for a batch
of (user, time) queries is a handful of vectorised ``searchsorted`` calls and one
gather: no Python loop per row or per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Rows per gather in ``histories``: bounds the (rows, max_len) index matrix to ~100 MB.
_CHUNK_ROWS = 1 << 18


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    # Sort-based distinct values: several times faster than np.unique's hash path here.
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


@dataclass(frozen=True)
class BehaviourStore:
    """Behaviours sorted by user code, then time, then order of arrival.

    Attributes
    ----------
    users : ndarray of shape (n_behaviours,), int64
        Encoded user of each behaviour.
    times : ndarray of shape (n_behaviours,)
        Time of each behaviour (int64 or float64).
    codes : ndarray of shape (n_features, n_behaviours + 1), int32
        Encoded item and item attributes of each behaviour, one contiguous row per
        feature, with a trailing 0 that padding positions gather.
    time_grid : ndarray
        The distinct stored times, sorted.
    keys : ndarray of shape (n_behaviours,), int64
        ``user * (len(time_grid) + 1) + rank of time``: sorted, so that one
        ``searchsorted`` finds a (user, time) position.
    """

    users: np.ndarray
    times: np.ndarray
    codes: np.ndarray
    time_grid: np.ndarray
    keys: np.ndarray

    @classmethod
    def empty(cls, n_features: int, time_dtype: np.dtype) -> BehaviourStore:
        return cls.from_arrays(
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=time_dtype),
            np.empty((0, n_features), dtype=np.int32),
        )

    @classmethod
    def from_arrays(cls, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        """Build from behaviours in arrival order; ``codes`` has shape (n, n_features)."""
        # lexsort is stable: behaviours with equal (user, time) keep their arrival order,
        # so the one that arrived last counts as the most recent.
        order = np.lexsort((times, users))
        users = np.ascontiguousarray(users[order], dtype=np.int64)
        times = np.ascontiguousarray(times[order])
        padded = np.zeros((codes.shape[1], len(order) + 1), dtype=np.int32)
        padded[:, :-1] = codes[order].T
        # Rank times on the grid of distinct stored times so that (user, time) folds into
        # one int64 key whatever the time unit: stored behaviour e precedes query q of the
        # same user exactly when rank(e) < rank_q, the number of stored times below t_q.
        grid = _distinct_sorted(times)
        stride = len(grid) + 1
        if len(users) and int(users.max()) >= np.iinfo(np.int64).max // stride:
            raise OverflowError("too many users x distinct times to index the behaviour store")
        keys = users * np.int64(stride) + np.searchsorted(grid, times, side="left")
        return cls(users=users, times=times, codes=padded, time_grid=grid, keys=keys)

    def __len__(self) -> int:
        return len(self.users)

    def behaviour_codes(self) -> np.ndarray:
        """The stored codes as (n_behaviours, n_features), in store order."""
        return self.codes[:, :-1].T

    def extend(self, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        """A new store holding these behaviours and the new ones (arriving after them)."""
        return BehaviourStore.from_arrays(
            np.concatenate([self.users, users.astype(np.int64)]),
            np.concatenate([self.times, times]),
            np.concatenate([self.behaviour_codes(), codes.astype(np.int32)]),
        )

    def histories(
        self, users: np.ndarray, times: np.ndarray, max_len: int, out: np.ndarray | None = None
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
        lengths = np.zeros(n, dtype=np.int32)
        if n == 0:
            return out, lengths
        stride = np.int64(len(self.time_grid) + 1)
        u = users.astype(np.int64) * stride
        # Sorted needles make searchsorted walk the keys forwards instead of jumping around.
        query_keys = u + np.searchsorted(self.time_grid, times, side="left")
        order = np.argsort(query_keys, kind="stable")
        end = np.empty(n, dtype=np.int64)
        end[order] = np.searchsorted(self.keys, query_keys[order], side="left")
        start = np.empty(n, dtype=np.int64)
        start[order] = np.searchsorted(self.keys, u[order], side="left")
        length = np.minimum(end - start, max_len)
        lengths[:] = length

        # Each history is a run of consecutive stored behaviours read backwards from `end`:
        # a window into the reversed codes, so one row copy per query instead of a gather
        # per position; positions past the history's length are zeroed by a prefix mask.
        n_stored = len(self)
        first = max_len + n_stored - end  # where codes[end - 1] lands in the reversed array
        prefix = np.arange(max_len)[None, :] < np.arange(max_len + 1)[:, None]
        zeros = np.zeros(max_len, dtype=np.int32)
        for f in range(n_features):
            reversed_codes = np.concatenate([zeros, self.codes[f, :n_stored][::-1], zeros])
            windows = sliding_window_view(reversed_codes, max_len)
            for lo in range(0, n, _CHUNK_ROWS):
                hi = min(lo + _CHUNK_ROWS, n)
                out[lo:hi, f, :] = windows[first[lo:hi]] * prefix[length[lo:hi]]
        return out, lengths
