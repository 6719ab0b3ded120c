"""Extra categorical columns (device, city, ...) named once, in the transformer, and embedded by
the classifier; the user column named once too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer, load_model, save_model
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(16,), max_epochs=3, batch_size=256,
             lr=3e-3, verbose=0, random_state=0)


def log_with_device(seed=0):
    rows = sample_negatives(make_interactions(n_users=300, n_items=200, random_state=seed),
                            random_state=seed)
    rng = np.random.default_rng(seed)
    # a planted string column: "app" on 80% of the clicks and 20% of the negatives
    app = rng.random(len(rows)) < np.where(rows["label"] == 1, 0.8, 0.2)
    device = np.where(app, "app", rng.choice(["web", "tv", "kiosk"], len(rows)))
    return rows.assign(device=device)


def test_context_column_is_encoded_from_raw_values():
    log = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "a"],
                        "cate_id": ["x", "y", "x"], "time": [1, 2, 1],
                        "device": ["phone", "tv", 3.5], "price": [1.0, 2.0, 3.0]})
    t = SequenceFeatureTransformer(max_len=2, categorical_cols=("device",)).fit(log)
    out = t.transform(log)
    assert list(out.columns[-2:]) == ["ctx_device", "price"]
    assert "device" not in out.columns  # consumed, like the ids
    assert out["ctx_device"].dtype == np.int32 and out["ctx_device"].min() >= 2
    unseen = t.transform(log.assign(device=["radio", "tv", "phone"]))
    assert unseen["ctx_device"].tolist()[0] == 1  # unknown
    assert unseen["ctx_device"].tolist()[1:] == out["ctx_device"].tolist()[:2][::-1]
    assert t.decode("ctx_device", out["ctx_device"]).tolist() == ["phone", "tv", 3.5]
    assert list(t.get_feature_names_out()) == list(out.columns)


def test_partial_fit_extends_a_context_vocabulary_keeping_old_codes():
    log = pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "cate_id": [1, 1], "time": [1, 2],
                        "city": ["Oslo", "Rome"]})
    t = SequenceFeatureTransformer(categorical_cols=("city",)).fit(log)
    before = t.transform(log)["ctx_city"].tolist()
    t.partial_fit(log.assign(city=["Lima", "Oslo"]))
    after = t.transform(log.assign(city=["Oslo", "Lima"]))["ctx_city"].tolist()
    assert after[0] == before[0] and after[1] == 4


@pytest.mark.parametrize("cols, match", [
    (("item_id",), "already"), (("time",), "already"), (("d", "d"), "duplicates"), ((3,), "names"),
])
def test_bad_categorical_cols_are_refused(cols, match):
    log = log_with_device().drop(columns="label").assign(d=1)
    with pytest.raises(ValueError, match=match):
        SequenceFeatureTransformer(categorical_cols=cols).fit(log)


def test_missing_values_in_a_context_column_are_named():
    log = log_with_device().drop(columns="label")
    log.loc[3, "device"] = None
    with pytest.raises(ValueError, match="'device' has 1 missing"):
        SequenceFeatureTransformer(categorical_cols=("device",)).fit(log)


def test_a_context_column_clashing_with_an_input_is_refused():
    log = log_with_device().drop(columns="label").assign(ctx_device=1.0)
    with pytest.raises(ValueError, match="clash"):
        SequenceFeatureTransformer(categorical_cols=("device",)).fit(log)


def test_classifier_embeds_context_columns_and_auc_rises():
    rows = log_with_device()
    train, _, test = leave_last_out_split(rows)
    X_train, y_train = train.drop(columns="label"), train["label"]
    X_test, y_test = test.drop(columns="label"), test["label"]
    with_device = make_pipeline(
        SequenceFeatureTransformer(max_len=10, categorical_cols=("device",)),
        DINClassifier(**SMALL)).fit(X_train, y_train)
    without = make_pipeline(SequenceFeatureTransformer(max_len=10),
                            DINClassifier(**SMALL)).fit(X_train.drop(columns="device"), y_train)
    layout = with_device[-1].layout_
    assert layout.sparse_cols == ("ctx_device",) and "ctx_device" not in layout.dense_cols
    assert layout.user_col == "user_id"  # found, and not embedded (user_embedding=False)
    auc_with = roc_auc_score(y_test, with_device.predict_proba(X_test)[:, 1])
    auc_without = roc_auc_score(y_test, without.predict_proba(X_test.drop(columns="device"))[:, 1])
    assert auc_with > auc_without + 0.05, (auc_with, auc_without)


def test_user_column_is_named_once(tmp_path):
    rows = log_with_device().rename(columns={"user_id": "customer"})
    X, y = rows.drop(columns="label"), rows["label"]
    model = make_pipeline(
        SequenceFeatureTransformer(user_col="customer", max_len=5, categorical_cols=("device",)),
        DINClassifier(**{**SMALL, "max_epochs": 1}),  # no user_col, no categorical_cols
    ).fit(X, y)
    assert model[-1].layout_.user_col == "user_id"
    assert model[-1].layout_.sparse_cols == ("ctx_device",)
    features = model[0].transform(X)
    users = model[0].decode("user_id", features["user_id"][:3])
    assert users.tolist() == X["customer"][:3].tolist()
    save_model(model, tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict_proba(X),
                                  model.predict_proba(X))
