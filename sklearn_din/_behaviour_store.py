"""Per-user behaviour sequences and point-in-time history look-ups, in numpy only.

The store keeps every behaviour (a click, or any interaction of a pure log) as
one row of integer codes, sorted by (user, time). A history look-up for a batch
of (user, time) queries is a handful of vectorised ``searchsorted`` calls and one
gather: no Python loop per row or per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows per gather in ``histories``: bounds the (rows, max_len) index matrix to ~100 MB.
_CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class BehaviourStore:
    """Behaviours sorted by user code, then time, then order of arrival.

    Attributes
    ----------
    users : ndarray of shape (n_behaviours,), int64
        Encoded user of each behaviour.
    times : ndarray of shape (n_behaviours,)
        Time of each behaviour (int64 or float64).
    codes : ndarray of shape (n_behaviours, n_features), int32
        Encoded item and item attributes of each behaviour.
    """

    users: np.ndarray
    times: np.ndarray
    codes: np.ndarray

    @classmethod
    def empty(cls, n_features: int, time_dtype: np.dtype) -> BehaviourStore:
        return cls(
            users=np.empty(0, dtype=np.int64),
            times=np.empty(0, dtype=time_dtype),
            codes=np.empty((0, n_features), dtype=np.int32),
        )

    @classmethod
    def from_arrays(cls, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        # lexsort is stable: behaviours with equal (user, time) keep their arrival order,
        # so the one that arrived last counts as the most recent.
        order = np.lexsort((times, users))
        return cls(
            users=np.ascontiguousarray(users[order], dtype=np.int64),
            times=np.ascontiguousarray(times[order]),
            codes=np.ascontiguousarray(codes[order], dtype=np.int32),
        )

    def __len__(self) -> int:
        return len(self.users)

    def extend(self, users: np.ndarray, times: np.ndarray, codes: np.ndarray) -> BehaviourStore:
        """A new store holding these behaviours and the new ones (arriving after them)."""
        return BehaviourStore.from_arrays(
            np.concatenate([self.users, users.astype(np.int64)]),
            np.concatenate([self.times, times]),
            np.concatenate([self.codes, codes.astype(np.int32)]),
        )

    def histories(
        self, users: np.ndarray, times: np.ndarray, max_len: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each query's behaviours strictly before its time, most recent first.

        Returns
        -------
        codes : ndarray of shape (n_queries, n_features, max_len), int32
            ``codes[i, f, 0]`` is feature ``f`` of query ``i``'s most recent earlier
            behaviour; positions past the history's length hold 0 (padding).
        lengths : ndarray of shape (n_queries,), int32
            Number of behaviours kept (at most ``max_len``).
        """
        n, n_features = len(users), self.codes.shape[1]
        out = np.zeros((n, n_features, max_len), dtype=np.int32)
        lengths = np.zeros(n, dtype=np.int32)
        if n == 0 or len(self) == 0:
            return out, lengths

        # Rank times on the grid of distinct stored times so that (user, time) folds into
        # one int64 key whatever the time unit: stored behaviour e precedes query q of the
        # same user exactly when rank(e) < rank_q, the number of stored times below t_q.
        grid = np.unique(self.times)
        stride = np.int64(len(grid) + 1)
        if int(self.users.max(initial=0)) >= np.iinfo(np.int64).max // int(stride):
            raise OverflowError("too many users x distinct times to index the behaviour store")
        keys = self.users * stride + np.searchsorted(grid, self.times, side="left")

        positions = np.arange(max_len, dtype=np.int64)
        for lo in range(0, n, _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, n)
            u = users[lo:hi].astype(np.int64)
            start = np.searchsorted(keys, u * stride, side="left")
            end = np.searchsorted(keys, u * stride + np.searchsorted(grid, times[lo:hi]), "left")
            length = np.minimum(end - start, max_len)
            valid = positions[None, :] < length[:, None]
            index = np.where(valid, end[:, None] - 1 - positions[None, :], 0)
            # (rows, max_len, features) -> (rows, features, max_len)
            gathered = np.where(valid[:, :, None], self.codes[index], 0)
            out[lo:hi] = gathered.transpose(0, 2, 1)
            lengths[lo:hi] = length
        return out, lengths
