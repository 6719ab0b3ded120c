"""Metrics of the DIN paper: group AUC (GAUC) and RelaImpr."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = ["gauc_score", "make_gauc_scorer", "rela_impr"]


def gauc_score(y_true: object, y_score: object, *, groups: object) -> float:
    """Impression-weighted mean of per-user ROC AUC (the DIN paper's "AUC", Eq. 10).

    ``GAUC = sum_u n_u * AUC_u / sum_u n_u`` over the groups (users) whose rows
    hold both classes; groups with a single class are skipped, as in the paper.

    Parameters
    ----------
    y_true : array-like of shape (n_rows,)
        Binary labels (0/1 or booleans).
    y_score : array-like of shape (n_rows,)
        Scores of the positive class.
    groups : array-like of shape (n_rows,)
        Group (user) of each row.

    Returns
    -------
    gauc : float
        NaN when no group has both classes.

    Raises
    ------
    ValueError
        ``y_score`` holds NaN or infinite values, ``groups`` missing values, or
        ``y_true`` labels other than 0/1.

    Examples
    --------
    >>> from sklearn_din.metrics import gauc_score
    >>> gauc_score([1, 0, 1, 0, 1], [0.9, 0.1, 0.2, 0.8, 0.5], groups=[1, 1, 2, 2, 3])
    0.5
    """
    y_true = column_or_1d(y_true)
    y_score = column_or_1d(y_score).astype(np.float64)
    groups = column_or_1d(groups)
    check_consistent_length(y_true, y_score, groups)
    if len(y_true) == 0:
        raise ValueError("gauc_score: got no rows (empty y_true).")
    # NaN would sort first and rank as the lowest score; refuse it as roc_auc_score does.
    assert_all_finite(y_score, input_name="y_score")
    if pd.isna(groups).any():
        raise ValueError("gauc_score: groups has missing values (NaN/None); every row needs "
                         "its group (user).")
    labels = np.unique(y_true)
    if not set(labels.tolist()) <= {0, 1}:
        raise ValueError(f"gauc_score: y_true must be 0/1 or booleans, got labels {labels[:5]}.")
    group, _ = pd.factorize(groups)
    y = y_true.astype(np.float64)
    # Per-group AUC by the rank-sum (Mann-Whitney U) formula, ties counted as half-wins,
    # vectorised: sort by (group, score), rank within group, average ranks over ties.
    order = np.lexsort((y_score, group))
    g, s, y = group[order], y_score[order], y[order]
    n = np.bincount(g).astype(np.float64)
    first = np.concatenate([[0.0], np.cumsum(n)[:-1]])
    raw_rank = np.arange(len(g)) - first[g] + 1.0
    run = np.cumsum(np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]) - 1
    rank = (np.bincount(run, weights=raw_rank) / np.bincount(run))[run]
    pos = np.bincount(g, weights=y)
    rank_pos = np.bincount(g, weights=rank * y)
    neg = n - pos
    both = (pos > 0) & (neg > 0)
    if not both.any():
        return float("nan")
    auc = (rank_pos[both] - pos[both] * (pos[both] + 1) / 2) / (pos[both] * neg[both])
    return float((auc * n[both]).sum() / n[both].sum())


def make_gauc_scorer(user_col: str = "user_id") -> Callable[[object, object, object], float]:
    """A scorer for ``GridSearchCV(scoring=...)`` and ``cross_val_score`` that computes GAUC.

    scikit-learn passes a scorer the fold's raw ``X``; the users are read from its
    ``user_col`` column, so no metadata routing is needed. The fitted estimator's
    ``classes_[1]`` is the positive class.

    Parameters
    ----------
    user_col : str, default="user_id"
        Column of X holding each row's user.

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y) -> float``

    Examples
    --------
    >>> from sklearn.model_selection import GroupKFold, cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> from sklearn_din.metrics import make_gauc_scorer
    >>> rows = sample_negatives(make_interactions(n_users=60, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=5),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0))
    >>> scores = cross_val_score(model, X, y, groups=X["user_id"], cv=GroupKFold(2),
    ...                          scoring=make_gauc_scorer("user_id"))
    >>> scores.shape
    (2,)
    """

    def gauc_scorer(estimator: object, X: object, y: object) -> float:
        if not hasattr(X, "columns") or user_col not in X.columns:
            raise ValueError(f"the GAUC scorer needs a DataFrame X with a {user_col!r} column.")
        positive = np.asarray(y) == estimator.classes_[1]
        return gauc_score(positive, estimator.predict_proba(X)[:, 1], groups=X[user_col])

    return gauc_scorer


@validate_params(
    {"auc": [Interval(Real, 0, 1, closed="both")],
     "auc_base": [Interval(Real, 0, 1, closed="both")]},
    prefer_skip_nested_validation=True,
)
def rela_impr(auc: float, auc_base: float) -> float:
    """Relative improvement over a base model, in percent (DIN paper, Eq. 11).

    ``RelaImpr = ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100``.

    Examples
    --------
    >>> from sklearn_din.metrics import rela_impr
    >>> round(rela_impr(0.75, 0.70), 1)
    25.0
    """
    if auc_base == 0.5:
        raise ValueError("rela_impr is undefined for a base AUC of 0.5.")
    return ((auc - 0.5) / (auc_base - 0.5) - 1.0) * 100.0
