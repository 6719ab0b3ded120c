"""sample_weight: a weight of k trains like the row k times, and reaches the classifier through
Pipeline routing, GridSearchCV, cross_validate, CalibratedClassifierCV and fit_stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
import torch.distributed as dist
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from skorch.dataset import ValidSplit

from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream
from sklearn_din.metrics import gauc_score, make_gauc_scorer

# PReLU, not Dice: Dice's batch statistics would see a duplicated row twice. No behaviour
# dropout: each copy of a duplicated row would lose other behaviours than the weighted row
# (a weight is a count in expectation there, not draw for draw).
EXACT = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), activation="prelu",
             optimizer=torch.optim.SGD, lr=0.5, max_epochs=3, batch_size=-1, verbose=0,
             embedding_l2=0.05, behaviour_dropout=0.0, random_state=0)
SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1, batch_size=64,
             verbose=0, random_state=0)


@pytest.fixture(scope="module")
def encoded(tiny_log):
    X, y = tiny_log
    return SequenceFeatureTransformer(max_len=4).fit_transform(X, y), y


def counts(n, seed=0):
    return np.random.default_rng(seed).integers(0, 4, n)  # 0 (dropped) to 3 copies


def weights_of(model):
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


def assert_same_weights(a, b, atol=1e-5):
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=1e-4, msg=name)


def test_integer_weights_train_exactly_like_duplicated_rows(encoded):
    X, y = encoded
    w = counts(len(X))
    copies = np.repeat(np.arange(len(X)), w)
    weighted = DINClassifier(**EXACT).fit(X, y, sample_weight=w)
    duplicated = DINClassifier(**EXACT).fit(X.iloc[copies], y[copies])
    # the embedding penalty's id frequencies count a row of weight k k times
    for a, b in zip(weighted.id_frequencies_, duplicated.id_frequencies_, strict=True):
        np.testing.assert_allclose(a, b)
    assert_same_weights(weighted, duplicated)
    np.testing.assert_allclose(weighted.history_[:, "train_loss"],
                               duplicated.history_[:, "train_loss"], rtol=1e-5)
    # ...and the weights matter: the unweighted fit is another model
    plain = DINClassifier(**EXACT).fit(X, y)
    assert not np.allclose(plain.predict_proba(X), weighted.predict_proba(X), atol=1e-4)


def test_scaling_all_weights_changes_nothing(encoded):
    X, y = encoded
    w = counts(len(X)) + 0.5
    a = DINClassifier(**EXACT).fit(X, y, sample_weight=w)
    b = DINClassifier(**{**EXACT, "embedding_l2": 0.0}).fit(X, y, sample_weight=10 * w)
    c = DINClassifier(**{**EXACT, "embedding_l2": 0.0}).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(b.predict_proba(X), c.predict_proba(X), atol=1e-5)
    assert a.history_[-1, "train_loss"] > 0


def test_partial_fit_weights_like_duplicated_rows(encoded):
    X, y = encoded
    w = counts(len(X), seed=1)
    copies = np.repeat(np.arange(len(X)), w)
    weighted = DINClassifier(**EXACT)
    duplicated = DINClassifier(**EXACT)
    for _ in range(2):
        weighted.partial_fit(X, y, sample_weight=w)
        duplicated.partial_fit(X.iloc[copies], y[copies])
    assert_same_weights(weighted, duplicated)


def test_validation_split_keeps_weights_with_their_rows(encoded):
    X, y = encoded
    w = np.where(y == 1, 1.0, 0.0)  # only positives weigh: the weighted valid loss sees them
    w[::7] = 1.0
    split = ValidSplit(0.25, random_state=0)
    # one validation batch: skorch averages the batches' (weighted) losses by batch size
    model = DINClassifier(**{**SMALL, "max_epochs": 2, "batch_size": -1},
                          train_split=split).fit(X, y, sample_weight=w)
    # recompute the last epoch's validation loss and AUC with the weights of the valid rows
    _, valid = split(model.get_dataset(model._training_inputs(X, y, "fit", w)[0], y))
    rows = np.asarray(valid.indices)
    proba = np.clip(model.predict_proba(X.iloc[rows])[:, 1], 1e-7, 1 - 1e-7)
    losses = -(y[rows] * np.log(proba) + (1 - y[rows]) * np.log(1 - proba))
    expected = (losses * w[rows]).sum() / w[rows].sum()
    assert model.history_[-1, "valid_loss"] == pytest.approx(expected, rel=1e-4)
    assert model.history_[-1, "valid_auc"] == pytest.approx(
        roc_auc_score(y[rows], proba, sample_weight=w[rows]), abs=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.ones(3), "shape"), ("nan", "NaN"), ("negative", "negative"),
    ("zeros", "every sample_weight is zero"),
])
def test_bad_weights_raise_before_training(encoded, bad, match):
    X, y = encoded
    w = {"nan": np.r_[np.nan, np.ones(len(X) - 1)], "negative": np.r_[-1.0, np.ones(len(X) - 1)],
         "zeros": np.zeros(len(X))}.get(bad, bad) if isinstance(bad, str) else bad
    model = DINClassifier(**SMALL)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, sample_weight=w)
    assert not hasattr(model, "module_") or not model.initialized_


def test_weights_need_a_criterion_with_per_row_losses(encoded):
    class MeanOnly(torch.nn.Module):
        def forward(self, y_pred, y_true):
            return ((y_pred - y_true) ** 2).mean()

    X, y = encoded
    with pytest.raises(TypeError, match="per-row losses"):
        DINClassifier(**SMALL, criterion=MeanOnly).fit(X, y, sample_weight=np.ones(len(X)))


# ------------------------------------------------------------------ scikit-learn plumbing
SEEN: list = []


class RecordingDIN(DINClassifier):
    """Records the weights each fit receives (clones included)."""

    def fit(self, X, y, sample_weight=None, **fit_params):
        SEEN.append((len(X), None if sample_weight is None else np.asarray(sample_weight)))
        return super().fit(X, y, sample_weight=sample_weight, **fit_params)


@pytest.fixture
def seen():
    SEEN.clear()
    yield SEEN
    SEEN.clear()


def test_pipeline_routes_weights_with_set_fit_request(tiny_log, seen):
    X, y = tiny_log
    w = np.where(y == 0, 3.0, 1.0)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(SequenceFeatureTransformer(max_len=4),
                             RecordingDIN(**SMALL).set_fit_request(sample_weight=True))
        pipe.fit(X, y, sample_weight=w)
        routed = pipe.predict_proba(X)
    direct = DINClassifier(**SMALL).fit(pipe[0].transform(X), y, sample_weight=w)
    np.testing.assert_array_equal(seen[0][1], w)
    np.testing.assert_allclose(routed, direct.predict_proba(pipe[0].transform(X)))


def test_pipeline_step_parameter_without_routing(tiny_log, seen):
    X, y = tiny_log
    w = np.where(y == 0, 3.0, 1.0)
    pipe = make_pipeline(SequenceFeatureTransformer(max_len=4), RecordingDIN(**SMALL))
    pipe.fit(X, y, recordingdin__sample_weight=w)
    np.testing.assert_array_equal(seen[0][1], w)


def test_grid_search_and_cross_validate_pass_each_fold_its_weights(tiny_log, seen):
    X, y = tiny_log
    w = np.arange(len(X), dtype=float) % 5 + 1.0  # every row's weight tells where it came from
    cv = GroupKFold(2)
    folds = list(cv.split(X, y, groups=X["user_id"]))
    expected = sorted([w[train].sum() for train, _ in folds] + [w.sum()])
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(SequenceFeatureTransformer(max_len=4),
                             RecordingDIN(**SMALL).set_fit_request(sample_weight=True))
        scorer = make_gauc_scorer().set_score_request(sample_weight=True)
        search = GridSearchCV(pipe, {"recordingdin__lr": [1e-3]}, cv=cv, scoring=scorer)
        search.fit(X, y, sample_weight=w, groups=X["user_id"])
        assert sorted(weights.sum() for _, weights in seen) == pytest.approx(expected)
        seen.clear()
        scores = cross_validate(pipe, X, y, cv=cv, scoring=scorer, return_estimator=True,
                                params={"sample_weight": w, "groups": X["user_id"]})
    assert sorted(weights.sum() for _, weights in seen) == pytest.approx(expected[:-1])
    # the scorer weighted each test fold with its own weights
    for (_, test), model, score in zip(folds, scores["estimator"], scores["test_score"],
                                       strict=True):
        proba = model.predict_proba(X.iloc[test])[:, 1]
        assert score == pytest.approx(gauc_score(y[test], proba, groups=X["user_id"].iloc[test],
                                                 sample_weight=w[test]))


def test_cross_validate_params_without_routing(tiny_log, seen):
    X, y = tiny_log
    w = np.arange(len(X), dtype=float) % 5 + 1.0
    pipe = make_pipeline(SequenceFeatureTransformer(max_len=4), RecordingDIN(**SMALL))
    cross_validate(pipe, X, y, cv=2, params={"recordingdin__sample_weight": w})
    assert len(seen) == 2 and all(weights is not None for _, weights in seen)


def test_calibrated_classifier_cv_fits_with_weights(tiny_log, seen):
    X, y = tiny_log
    w = np.arange(len(X), dtype=float) % 5 + 1.0
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(SequenceFeatureTransformer(max_len=4),
                             RecordingDIN(**SMALL).set_fit_request(sample_weight=True))
        CalibratedClassifierCV(pipe, cv=2).fit(X, y, sample_weight=w)
    assert len(seen) == 2
    assert sum(weights.sum() for _, weights in seen) == pytest.approx(w.sum())
    seen.clear()
    # without routing, the classifier alone (its fit takes sample_weight)
    encoded = SequenceFeatureTransformer(max_len=4).fit_transform(X, y)
    CalibratedClassifierCV(RecordingDIN(**SMALL), cv=2).fit(encoded, y, sample_weight=w)
    assert len(seen) == 2 and all(weights is not None for _, weights in seen)


# ------------------------------------------------------------------ fit_stream
def test_fit_stream_weight_column_equals_the_weighted_in_memory_fit(encoded):
    X, y = encoded
    w = counts(len(X), seed=2).astype(float)
    params = {**EXACT, "batch_size": 256}
    streamed = fit_stream(DINClassifier(**params), [X.assign(label=y, weight=w)],
                          weight_col="weight")
    in_memory = DINClassifier(**params).fit(X, y, sample_weight=w)
    assert_same_weights(streamed, in_memory, atol=1e-6)
    assert list(streamed.feature_names_in_) == list(X.columns)  # the weight is no input


def test_fit_stream_refuses_a_missing_or_bad_weight_column(encoded):
    X, y = encoded
    chunks = [X.assign(label=y, weight=1.0).iloc[:100], X.assign(label=y).iloc[100:]]
    with pytest.raises(ValueError, match="chunk 1 lacks the weight column 'weight'"):
        fit_stream(DINClassifier(**SMALL), chunks, weight_col="weight")
    with pytest.raises(ValueError, match="negative"):
        fit_stream(DINClassifier(**SMALL), [X.assign(label=y, weight=-1.0)], weight_col="weight")


# ------------------------------------------------------------------ GAUC
def test_weighted_gauc_equals_gauc_of_duplicated_rows():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    score = rng.integers(0, 6, n) / 5  # ties
    groups = rng.choice(list("abcdefg"), n)
    w = rng.integers(0, 4, n)
    copies = np.repeat(np.arange(n), w)
    assert gauc_score(y, score, groups=groups, sample_weight=w) == pytest.approx(
        gauc_score(y[copies], score[copies], groups=groups[copies]), abs=1e-12)
    assert gauc_score(y, score, groups=groups, sample_weight=np.ones(n)) == pytest.approx(
        gauc_score(y, score, groups=groups), abs=1e-12)


def test_gauc_scorer_honours_weights(tiny_log):
    X, y = tiny_log
    model = make_pipeline(SequenceFeatureTransformer(max_len=4), DINClassifier(**SMALL)).fit(X, y)
    w = np.where(X["user_id"].to_numpy() % 2 == 0, 0.0, 2.0)
    scorer = make_gauc_scorer()
    proba = model.predict_proba(X)[:, 1]
    odd = pd.Series(X["user_id"].to_numpy() % 2 == 1)
    assert scorer(model, X, y, sample_weight=w) == pytest.approx(
        gauc_score(y[odd], proba[odd], groups=X["user_id"][odd.to_numpy()]))
    assert repr(scorer) == "make_gauc_scorer(user_col='user_id')"


def test_distributed_fit_weights_each_shard_by_the_global_batch(encoded, tmp_path):
    """A process group of one: the distributed loss path (global weight normaliser) gives
    the plain weighted fit, step for step."""
    X, y = encoded
    w = counts(len(X), seed=3) + 0.25
    params = {**EXACT, "batch_size": 256, "optimizer": torch.optim.Adam, "lr": 1e-2}
    plain = DINClassifier(**params).fit(X, y, sample_weight=w)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        parallel = DINClassifier(**params, distributed=True).fit(X, y, sample_weight=w)
    finally:
        dist.destroy_process_group()
    np.testing.assert_allclose(parallel.history_[:, "train_loss"], plain.history_[:, "train_loss"],
                               rtol=1e-6)
    assert_same_weights(parallel, plain, atol=1e-6)
