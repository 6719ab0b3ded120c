"""The internal validation split of early stopping: each chosen user's latest rows.

A random row split would put a user's later rows in training while their earlier rows are
validated, so the validation score would reward memorising the future. Here, as in the DIN
protocol's leave-last-out split, the validation rows of a user are that user's *latest* rows,
and every training row of that user is strictly earlier.

The classifier never sees times (the transformer consumes them), but ``hist_len`` orders a
user's rows: it counts the behaviours strictly before a row, so a row with a shorter history
is strictly earlier than one with a longer history. A user's latest rows are the rows with the
user's largest ``hist_len`` (a click and its sampled negatives; when histories are truncated
at ``max_len``, every row with a full history, which all come after the user's first
``max_len`` behaviours).

A heavy user's latest rows can be hundreds of rows (MovieLens: every row after the user's first
``max_len`` ratings), so a handful of drawn users would make up the whole validation set and the
stopping epoch would depend on which few were drawn. Users whose latest rows would exceed
``MAX_USER_SHARE`` of the validation rows are therefore drawn only after every other user: the
validation rows come from many users, and heavy users train on all their rows.
"""

from __future__ import annotations

import numpy as np

# No user holds more than this share of early stopping's validation rows while other users
# can fill them (1/20: at least 20 users are validated whenever 20 users are eligible).
MAX_USER_SHARE = 0.05


def latest_rows_split(
    users: np.ndarray | None,
    history_length: np.ndarray,
    fraction: float,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, valid)``: the latest rows of random users, about ``fraction``.

    Users are drawn in random order and their latest rows moved to validation until
    ``fraction`` of the rows are there (at least one user); users whose latest rows exceed
    ``MAX_USER_SHARE`` of that target come after all others in the drawing order. Without
    user ids (``users`` is None) the split is a random row split: nothing then tells which
    rows are a user's future.
    """
    n_rows = len(history_length)
    target = max(1, int(round(fraction * n_rows)))
    if users is None:
        order = rng.permutation(n_rows)
        return np.sort(order[target:]), np.sort(order[:target])
    user_codes, users = np.unique(users, return_inverse=True)
    latest_length = np.full(len(user_codes), -1, dtype=np.int64)
    np.maximum.at(latest_length, users, history_length)
    latest = history_length == latest_length[users]
    latest_rows = np.bincount(users, weights=latest, minlength=len(user_codes))
    order = rng.permutation(len(user_codes))
    heavy = latest_rows[order] > max(1.0, np.ceil(MAX_USER_SHARE * target))
    order = np.concatenate([order[~heavy], order[heavy]])  # stable: the drawn order kept
    # Users in drawn order until their latest rows reach the target (the one crossing it too).
    taken = np.cumsum(latest_rows[order]) < target
    taken[np.argmin(taken) if not taken.all() else len(taken) - 1] = True
    chosen = np.zeros(len(user_codes), dtype=bool)
    chosen[order[taken]] = True
    valid = latest & chosen[users]
    return np.flatnonzero(~valid), np.flatnonzero(valid)
