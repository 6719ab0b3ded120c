"""Attention explanations decode the right behaviours and respect padding."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer, explain_attention
from sklearn_din.datasets import make_interactions, sample_negatives


@pytest.fixture(scope="module")
def data():
    log = make_interactions(n_users=60, n_items=50, random_state=3)
    log["time"] = pd.to_datetime(log["time"], unit="s")
    log["item_id"] = "item-" + log["item_id"].astype(str)
    rows = sample_negatives(log, random_state=3)
    return log, rows.drop(columns="label"), rows["label"]


def _fit(X, y, **params):
    return make_pipeline(
        SequenceFeatureTransformer(max_len=6),
        DINClassifier(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1,
                      verbose=0, random_state=0, **params),
    ).fit(X, y)


@pytest.mark.parametrize("normalization, sink", [(None, "auto"), ("softmax", False),
                                                 ("softmax", "auto")])
def test_explanations_list_the_users_earlier_clicks(data, normalization, sink):
    log, X, y = data
    model = _fit(X, y, attention_normalization=normalization, attention_sink=sink)
    rows = X.iloc[-40:]
    explanation = explain_attention(model, rows)
    for label, group in explanation.groupby("row"):
        row = X.loc[label]
        earlier = log[(log["user_id"] == row["user_id"]) & (log["time"] < row["time"])]
        expected = earlier.sort_values("time", kind="stable").iloc[::-1].head(6)
        assert group["item_id"].tolist() == expected["item_id"].tolist()
        assert group["cate_id"].tolist() == expected["cate_id"].tolist()
        assert list(group["time"]) == list(expected["time"])
        assert group["position"].tolist() == list(range(len(group)))
        if normalization == "softmax" and not sink:
            assert group["weight"].sum() == pytest.approx(1.0)
        elif normalization == "softmax":  # the rest is the attention sink's
            assert 0 < group["weight"].sum() < 1
    # rows without any earlier click have no line at all
    lengths = model[0].transform(rows)["hist_len"]
    assert explanation["row"].nunique() == int((lengths > 0).sum())
    assert len(explanation) == int(lengths.sum())


def test_padding_weighs_exactly_zero(data):
    _, X, y = data
    model = _fit(X, y)
    features = model[0].transform(X)
    weights = model[-1].attention_weights(features)
    padding = np.arange(6)[None, :] >= features["hist_len"].to_numpy()[:, None]
    assert padding.any() and (weights[padding] == 0).all()
    assert (weights[~padding] != 0).any()


def test_score_matches_predict_proba(data):
    _, X, y = data
    model = _fit(X, y)
    rows = X.iloc[-10:]
    explanation = explain_attention(model, rows)
    proba = pd.Series(model.predict_proba(rows)[:, 1], index=rows.index)
    np.testing.assert_allclose(explanation["score"], proba.loc[explanation["row"]].to_numpy())


def test_model_without_history_is_refused(data):
    _, X, y = data
    features = SequenceFeatureTransformer(max_len=3).fit_transform(X, y)
    plain = DINClassifier(max_epochs=1, verbose=0).fit(features[["user_id", "item_id"]], y)
    with pytest.raises(ValueError, match="without history"):
        explain_attention(plain, features[["user_id", "item_id"]])


def test_frozen_transformer_pipeline_explains_saves_and_scores(data, tmp_path):
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    from sklearn_din import load_model, save_model
    from sklearn_din.metrics import gauc_score, make_gauc_scorer

    log, X, y = data
    transformer = SequenceFeatureTransformer(max_len=6).fit(X, y)
    model = Pipeline([
        ("features", FrozenEstimator(transformer)),
        ("din", DINClassifier(embed_dim=4, attention_units=(8,), hidden_units=(8,),
                              max_epochs=1, verbose=0, random_state=0)),
    ]).fit(X, y)
    explanation = explain_attention(model, X.iloc[-5:])
    assert explanation["item_id"].str.startswith("item-").all()  # decoded through the freeze
    assert "time" in explanation

    save_model(model, tmp_path / "frozen.npz")
    loaded = load_model(tmp_path / "frozen.npz")
    assert isinstance(loaded.steps[0][1], FrozenEstimator)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))

    scorer = make_gauc_scorer("user_id")
    expected = gauc_score(y, model.predict_proba(X)[:, 1], groups=X["user_id"])
    assert scorer(model, X, y) == pytest.approx(expected)
    with pytest.raises(ValueError, match="user_id"):
        scorer(model, X.drop(columns="user_id").to_numpy(), y)


def test_integer_times_stay_integers(data):
    _, X, y = data
    X = X.assign(time=X["time"].astype("int64") // 10**9)
    explanation = explain_attention(_fit(X, y), X.iloc[-5:])
    assert explanation["time"].dtype.kind == "i"
