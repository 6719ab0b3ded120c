"""Metrics of the DIN paper: group AUC (GAUC) and RelaImpr."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ._validation import check_sample_weight

__all__ = ["GAUCScorer", "gauc_score", "make_gauc_scorer", "rela_impr"]


def gauc_score(
    y_true: object, y_score: object, *, groups: object, sample_weight: object = None
) -> float:
    """Impression-weighted mean of per-user ROC AUC (the DIN paper's "AUC", Eq. 10).

    ``GAUC = sum_u n_u * AUC_u / sum_u n_u`` over the groups (users) whose rows
    hold both classes; groups with a single class are skipped, as in the paper.
    With ``sample_weight``, ``n_u`` is the user's total weight and ``AUC_u`` the
    weighted AUC: a row of weight 2 counts as that row twice.

    Parameters
    ----------
    y_true : array-like of shape (n_rows,)
        Binary labels (0/1 or booleans).
    y_score : array-like of shape (n_rows,)
        Scores of the positive class.
    groups : array-like of shape (n_rows,)
        Group (user) of each row.
    sample_weight : array-like of shape (n_rows,) or None, default=None
        Non-negative weight of each row.

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
    if len(y_true) == 0:
        return float("nan")
    weight = (np.ones(len(y_true)) if sample_weight is None else
              check_sample_weight(sample_weight, len(y_true), who="gauc_score",
                                  allow_all_zero=True).astype(np.float64))
    group, _ = pd.factorize(groups)
    y = y_true.astype(np.float64)
    # Per-group AUC by the Mann-Whitney U statistic with weights, vectorised: sort by
    # (group, score); each positive wins the weight of its group's negatives scored
    # lower and half the weight of those tied with it (ties are runs of equal
    # (group, score)).
    order = np.lexsort((y_score, group))
    g, s, y, w = group[order], y_score[order], y[order], weight[order]
    run = np.cumsum(np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]) - 1
    run_group = g[np.r_[True, run[1:] != run[:-1]]]
    run_pos, run_neg = np.bincount(run, weights=w * y), np.bincount(run, weights=w * (1 - y))
    pos, neg = np.bincount(g, weights=w * y), np.bincount(g, weights=w * (1 - y))
    # negative weight in earlier runs of the same group: an exclusive running sum over
    # the runs, less the negative weight of the earlier groups
    below = np.cumsum(run_neg) - run_neg - (np.cumsum(neg) - neg)[run_group]
    wins = np.bincount(run_group, weights=run_pos * (below + 0.5 * run_neg),
                       minlength=len(pos))
    both = (pos > 0) & (neg > 0)
    if not both.any():
        return float("nan")
    auc = wins[both] / (pos[both] * neg[both])
    impressions = pos[both] + neg[both]
    return float((auc * impressions).sum() / impressions.sum())


class GAUCScorer:
    """GAUC as a scorer ``scorer(estimator, X, y, sample_weight=None)``; made by
    :func:`make_gauc_scorer`.

    Supports scikit-learn's metadata routing: ``set_score_request(sample_weight=True)``
    asks a search or ``cross_validate`` to pass each fold's weights.

    Parameters
    ----------
    user_col : str, default="user_id"
        Column of X holding each row's user.

    Examples
    --------
    >>> from sklearn_din.metrics import make_gauc_scorer
    >>> scorer = make_gauc_scorer("customer").set_score_request(sample_weight=True)
    >>> scorer
    make_gauc_scorer(user_col='customer')
    >>> scorer.get_metadata_routing().score.requests
    {'sample_weight': True}
    """

    def __init__(self, user_col: str = "user_id") -> None:
        self.user_col = user_col
        self.sample_weight_request: bool | None = None

    def __repr__(self) -> str:
        return f"make_gauc_scorer(user_col={self.user_col!r})"

    def __call__(self, estimator: object, X: object, y: object,
                 sample_weight: object = None) -> float:
        user_col = self.user_col
        if not hasattr(X, "columns") or user_col not in X.columns:
            raise ValueError(f"the GAUC scorer needs a DataFrame X with a {user_col!r} column.")
        positive = np.asarray(y) == estimator.classes_[1]
        return gauc_score(positive, estimator.predict_proba(X)[:, 1],
                          groups=np.asarray(X[user_col]), sample_weight=sample_weight)

    def set_score_request(self, *, sample_weight: bool | None = None) -> GAUCScorer:
        """Whether metadata routing passes ``sample_weight`` to this scorer (True: yes;
        False: no; None: an error if one is passed)."""
        self.sample_weight_request = sample_weight
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """The metadata this scorer requests (scikit-learn's routing protocol)."""
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="sample_weight", alias=self.sample_weight_request)
        return request


def make_gauc_scorer(user_col: str = "user_id") -> GAUCScorer:
    """A scorer for ``GridSearchCV(scoring=...)`` and ``cross_val_score`` that computes GAUC.

    scikit-learn passes a scorer the fold's raw ``X``; the users are read from its
    ``user_col`` column, so no metadata routing is needed for them. The fitted
    estimator's ``classes_[1]`` is the positive class. Sample weights are honoured
    when passed (``scorer(estimator, X, y, sample_weight=w)``, or routed by a search
    after ``make_gauc_scorer().set_score_request(sample_weight=True)``).

    Parameters
    ----------
    user_col : str, default="user_id"
        Column of X holding each row's user.

    Returns
    -------
    scorer : GAUCScorer
        A callable ``scorer(estimator, X, y, sample_weight=None) -> float``.

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
    return GAUCScorer(user_col)


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
