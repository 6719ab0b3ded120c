"""One set of rules finds the estimators inside a model, for every function that takes one."""

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, GroupKFold, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_din import (
    DINClassifier,
    SequenceFeatureTransformer,
    explain_attention,
    onnx_inputs,
    save_model,
)
from sklearn_din._model_parts import model_parts
from sklearn_din.datasets import make_interactions, sample_negatives

SMALL = {"embed_dim": 4, "attention_units": (8,), "hidden_units": (8,), "max_epochs": 1,
         "batch_size": 256, "verbose": 0, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    rows = sample_negatives(make_interactions(n_users=40, n_items=30, n_categories=5,
                                              mean_events=8, random_state=0), random_state=0)
    return rows.drop(columns="label"), rows["label"]


def _pipeline(X, y):
    # The transformer fit once on the whole log (as for cross-validation by user).
    transformer = SequenceFeatureTransformer(max_len=5).fit(X, y)
    return make_pipeline(FrozenEstimator(transformer), DINClassifier(**SMALL))


@pytest.fixture(scope="module")
def searched(data):
    X, y = data
    groups = X["user_id"]
    return GridSearchCV(_pipeline(X, y), {"dinclassifier__embed_dim": [3, 4]}, cv=GroupKFold(2),
                        scoring="roc_auc").fit(X, y, groups=groups)


def test_explain_attention_unwraps_a_search_as_plot_attention_does(data, searched):
    # Regression: on 0.2's main explain_attention(GridSearchCV(...)) raised TypeError
    # while plot_attention unwrapped the search.
    X, _ = data
    rows = X.tail(30)
    expected = explain_attention(searched.best_estimator_, rows)
    pd.testing.assert_frame_equal(explain_attention(searched, rows), expected)
    assert len(expected) and expected["weight"].notna().all()


def test_every_wrapper_leads_to_the_same_classifier_and_transformer(data, searched):
    X, y = data
    best = searched.best_estimator_
    calibrated = CalibratedClassifierCV(FrozenEstimator(best)).fit(X, y)
    randomized = RandomizedSearchCV(best, {"dinclassifier__lr": [1e-3]}, n_iter=1, cv=2,
                                    random_state=0).fit(X, y)
    for model in (best, FrozenEstimator(best), searched, calibrated, FrozenEstimator(searched)):
        parts = model_parts(model)
        assert parts.classifier is best[-1] and parts.transformer is best[0].estimator
        assert parts.model is best and parts.head.steps == best[:-1].steps
    parts = model_parts(randomized)
    assert isinstance(parts.classifier, DINClassifier)
    assert isinstance(parts.transformer, SequenceFeatureTransformer)
    bare = model_parts(best[-1])
    assert bare.classifier is best[-1] and bare.transformer is None and bare.head is None
    np.testing.assert_array_equal(onnx_inputs(searched, X.head(5))["history"],
                                  onnx_inputs(best, X.head(5))["history"])


def test_save_model_says_to_save_a_searchs_best_estimator(searched, tmp_path):
    # save_model keeps wrappers as they are (a frozen step stays frozen): a search is not
    # a model file, and the error says what to save instead.
    with pytest.raises(TypeError, match="cannot save a GridSearchCV.*best_estimator_"):
        save_model(searched, tmp_path / "search.npz")
    save_model(searched.best_estimator_, tmp_path / "best.npz")


def test_a_calibrated_ensemble_is_not_taken_for_one_model(data):
    # With ensemble=True each fold has its own network: none of them is the model.
    X, y = data
    ensemble = CalibratedClassifierCV(_pipeline(X, y), cv=2).fit(X, y)
    parts = model_parts(ensemble)
    assert parts.classifier is None and parts.model is ensemble
    with pytest.raises(TypeError, match="explain_attention: the model must be a DINClassifier "
                                        "or a Pipeline ending in one .* CalibratedClassifierCV"):
        explain_attention(ensemble, X.head(3))


def test_an_unfitted_model_is_read_without_unwrapping(data):
    pipe = make_pipeline(StandardScaler(), DINClassifier(**SMALL))
    parts = model_parts(pipe, fitted=False)
    assert parts.classifier is pipe[-1] and parts.transformer is None
    assert [name for name, _ in parts.head.steps] == ["standardscaler"]
    with pytest.raises(Exception, match="step 'standardscaler' is not fitted"):
        parts.check_head_fitted("fit_stream")
    # An unfitted search has no best estimator: it is no classifier.
    search = GridSearchCV(pipe, {"dinclassifier__lr": [1e-3]})
    assert model_parts(search, fitted=False).classifier is None
    assert model_parts(search).classifier is None
