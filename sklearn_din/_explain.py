"""Attention explanations: which past behaviours drove each prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ._classifier import DINClassifier
from ._layout import HIST_LEN_COL, history_column
from ._model_parts import model_parts


def explain_attention(model: Pipeline | DINClassifier, X: pd.DataFrame) -> pd.DataFrame:
    """One row per (input row, real history position) with its attention weight.

    Parameters
    ----------
    model : Pipeline ending in DINClassifier, or DINClassifier
        A fitted model, also inside a ``FrozenEstimator``, a fitted search (its
        ``best_estimator_``) or a ``CalibratedClassifierCV`` of one model. When the
        pipeline starts with a :class:`SequenceFeatureTransformer`, history ids are
        decoded back to their raw values and each behaviour's time is given; a bare
        classifier reports the integer codes of its input.
    X : DataFrame
        Rows as the model's ``predict_proba`` takes them.

    Returns
    -------
    explanation : DataFrame
        Columns ``row`` (X's index label), ``position`` (0 = most recent
        behaviour), ``weight``, one column per history feature (``item_id``,
        ``cate_id``, ... of the past behaviour), ``time`` (when the pipeline has a
        transformer), and ``score`` (the row's predicted probability of
        ``classes_[1]``). Padding positions are not listed: their weight is 0.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer, explain_attention
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=5),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> explain_attention(model, X.tail(2)).columns.tolist()
    ['row', 'position', 'weight', 'item_id', 'cate_id', 'time', 'score']
    """
    parts = model_parts(model)
    classifier = parts.require_classifier("explain_attention")
    transformer, features = parts.transformer, parts.transform(X)
    layout = classifier.layout_
    if not layout.history_features:
        raise ValueError("explain_attention: the model was fit without history columns.")
    weights = classifier.attention_weights(features)
    scores = classifier.predict_proba(features)[:, 1]
    if layout.has_hist_len:
        lengths = features[HIST_LEN_COL].to_numpy().clip(0, layout.max_len)
    else:
        lengths = (weights != 0).sum(axis=1)
    rows, positions = np.nonzero(np.arange(layout.max_len)[None, :] < lengths[:, None])
    out = pd.DataFrame({
        "row": np.asarray(X.index)[rows],
        "position": positions,
        "weight": weights[rows, positions],
    })
    for feature in layout.history_features:
        block = features[[history_column(feature, k) for k in range(layout.max_len)]].to_numpy()
        codes = block[rows, positions]
        known = transformer is not None and feature in transformer.vocabularies_
        out[feature] = transformer.decode(feature, codes) if known else codes
    if transformer is not None:
        times = transformer.history_times(X)[rows, positions]
        store_kind = transformer.behaviour_store_.times.dtype.kind
        if transformer.time_kind_ == "numeric" and store_kind == "i":
            times = times.astype(np.int64)  # real positions only: no NaN, keep integer times
        out["time"] = times
    out["score"] = scores[rows]
    return out
