"""Behaviour tests of DINClassifier and its network (DeepInterestNetwork, Dice, attention).

Small data (conftest.ctr_data: about 6,000 training rows, histories of at most 20),
small models and few epochs keep the whole file fast on two cores.
"""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from sklearn_din import (
    DINClassifier,
    NoHistoryWarning,
    SequenceFeatureTransformer,
    load_model,
    save_model,
)

MAX_LEN = 20
ITEM_ONLY = ["user_id", "item_id", "cate_id"]
HISTORY_FEATURES = ("item_id", "cate_id")

# Small and fast, but enough to learn something in two epochs.
SMALL = dict(
    embed_dim=4, attention_units=(8,), hidden_units=(16,), lr=1e-2, max_epochs=2,
    batch_size=512, verbose=0, random_state=0, user_embedding=True,
)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def fitted(ctr_data):
    """fitted(**params): a DINClassifier fit on the training rows, cached per params.

    Tests must not mutate the returned model (predicting is fine).
    """
    cache = {}

    def fit(**params):
        key = tuple(sorted(params.items()))
        if key not in cache:
            model = DINClassifier(**{**SMALL, **params})
            cache[key] = model.fit(ctr_data.X_train, ctr_data.y_train)
        return cache[key]

    return fit


def _hist_cols(feature, positions=range(MAX_LEN)):
    return [f"hist_{feature}_{k}" for k in positions]


# ----------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def learning_budget():
    return dict(
        embed_dim=8, attention_units=(16,), hidden_units=(32, 16), lr=3e-3, max_epochs=5,
        batch_size=256, verbose=0, random_state=0,
    )


@pytest.fixture(scope="module")
def item_only_auc(ctr_data, learning_budget):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoHistoryWarning)
        model = DINClassifier(**learning_budget).fit(ctr_data.X_train[ITEM_ONLY],
                                                     ctr_data.y_train)
    return roc_auc_score(ctr_data.y_test, model.predict_proba(ctr_data.X_test[ITEM_ONLY])[:, 1])


@pytest.mark.parametrize("normalization", [None, "softmax"])
def test_din_learns_planted_history_signal_beyond_item_only(
    ctr_data, learning_budget, item_only_auc, normalization
):
    model = DINClassifier(attention_normalization=normalization, **learning_budget)
    model.fit(ctr_data.X_train, ctr_data.y_train)
    auc = roc_auc_score(ctr_data.y_test, model.predict_proba(ctr_data.X_test)[:, 1])
    assert item_only_auc > 0.55, "the item-only baseline should learn item popularity"
    assert auc >= item_only_auc + 0.05, (auc, item_only_auc)


# ----------------------------------------------------------------------------- padding
def _garbage_padding(X, rng):
    """X with random ids (some beyond the vocabulary) in every position >= hist_len,
    and a second copy whose padding values are permuted among the padding positions."""
    lengths = X["hist_len"].to_numpy()
    garbage, permuted = X.copy(), X.copy()
    pad = np.arange(MAX_LEN)[None, :] >= lengths[:, None]  # (n, L)
    for feature in HISTORY_FEATURES:
        cols = _hist_cols(feature)
        values = rng.integers(0, 400, size=(len(X), MAX_LEN))
        block = np.where(pad, values, X[cols].to_numpy())
        garbage[cols] = block
        shuffled = block.copy()
        for i in np.flatnonzero(pad.any(axis=1)):
            where = np.flatnonzero(pad[i])
            shuffled[i, where] = block[i, rng.permutation(where)]
        permuted[cols] = shuffled
    return garbage, permuted


@pytest.mark.parametrize(
    "params",
    [
        dict(pooling="attention", attention_normalization=None),
        dict(pooling="attention", attention_normalization="softmax"),
        dict(pooling="sum"),
        dict(pooling="mean"),
    ],
    ids=["attention-raw", "attention-softmax", "sum", "mean"],
)
def test_padding_content_and_order_cannot_change_predictions(ctr_data, fitted, params):
    model = fitted(**params)
    X = ctr_data.X_test
    assert (X["hist_len"] < MAX_LEN).mean() > 0.5, "the test needs rows with padding"
    garbage, permuted = _garbage_padding(X, np.random.default_rng(0))
    assert not garbage.equals(X)
    expected = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(garbage), expected)
    np.testing.assert_array_equal(model.predict_proba(permuted), expected)


def test_real_history_content_does_change_predictions(ctr_data, fitted):
    """Control for the padding test: the same edit inside the real positions matters."""
    model = fitted(pooling="attention")
    X = ctr_data.X_test
    X = X[X["hist_len"] > 0]
    edited = X.copy()
    edited["hist_item_id_0"] = (X["hist_item_id_0"] + 7) % model.history_vocab_sizes_[0]
    changed = np.abs(model.predict_proba(edited)[:, 1] - model.predict_proba(X)[:, 1]) > 1e-6
    assert changed.mean() > 0.5


# ----------------------------------------------------------------------------- determinism
DETERMINISM = dict(SMALL, dropout=0.2, random_state=7)


def test_same_random_state_gives_identical_predictions(ctr_data):
    X, y = ctr_data.X_train, ctr_data.y_train
    first = DINClassifier(**DETERMINISM).fit(X, y).predict_proba(ctr_data.X_test)
    second = DINClassifier(**DETERMINISM).fit(X, y).predict_proba(ctr_data.X_test)
    np.testing.assert_array_equal(first, second)


def test_clone_then_refit_reproduces_and_other_seed_differs(ctr_data):
    X, y = ctr_data.X_train, ctr_data.y_train
    model = DINClassifier(**DETERMINISM).fit(X, y)
    expected = model.predict_proba(ctr_data.X_test)
    refit = clone(model).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(ctr_data.X_test), expected)
    # Refitting the same object also starts afresh and reproduces.
    np.testing.assert_array_equal(model.fit(X, y).predict_proba(ctr_data.X_test), expected)
    other = DINClassifier(**{**DETERMINISM, "random_state": 8}).fit(X, y)
    assert np.abs(other.predict_proba(ctr_data.X_test) - expected).max() > 1e-4


def test_seeded_fits_in_threads_reproduce_the_sequential_fit(ctr_data):
    # torch has one random generator per process; seeded fits running in threads (joblib's
    # threading backend, Dask worker threads) must not draw from each other's stream.
    from concurrent.futures import ThreadPoolExecutor

    X, y = ctr_data.X_train, ctr_data.y_train
    expected = DINClassifier(**DETERMINISM).fit(X, y).predict_proba(ctr_data.X_test)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: DINClassifier(**DETERMINISM).fit(X, y), range(4)))
    for model in models:
        np.testing.assert_array_equal(model.predict_proba(ctr_data.X_test), expected)


def test_pickle_round_trip_is_bit_identical(ctr_data, fitted):
    model = fitted()
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(
        loaded.predict_proba(ctr_data.X_test), model.predict_proba(ctr_data.X_test)
    )
    np.testing.assert_array_equal(loaded.classes_, model.classes_)


def test_fit_leaves_global_random_state_untouched(ctr_data):
    torch.manual_seed(123)
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global RNG on purpose)
    DINClassifier(**DETERMINISM).fit(ctr_data.X_train, ctr_data.y_train)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002


def test_prediction_of_a_row_does_not_depend_on_its_batch(ctr_data, fitted):
    model = fitted()
    X = ctr_data.X_test
    everything = model.predict_proba(X)
    picks = list(range(0, len(X), 57))
    alone = np.vstack([model.predict_proba(X.iloc[[i]]) for i in picks])
    np.testing.assert_allclose(alone, everything[picks], rtol=1e-5, atol=1e-7)


def test_id_frequencies_count_candidates_and_real_history_positions(ctr_data, monkeypatch):
    # The counts behind the mini-batch aware penalty are accumulated in row chunks; a
    # chunk size that does not divide the rows must give the brute-force counts, and
    # ids written after a row's history length (not padding by the layout) are not counted.
    import sklearn_din._layout as layout_module

    monkeypatch.setattr(layout_module, "FREQUENCY_CHUNK_ROWS", 777)
    X = ctr_data.X_train.copy()
    short = X["hist_len"] > 2
    X.loc[short, "hist_item_id_2"] = 3  # beyond hist_len = 2 below: must not be counted
    X.loc[short, "hist_len"] = 2
    model = DINClassifier(**{**SMALL, "max_epochs": 1}).fit(X, ctr_data.y_train)
    for f, feature in enumerate(["item_id", "cate_id"]):
        expected = np.zeros(model.history_vocab_sizes_[f], dtype=np.int64)
        np.add.at(expected, X[feature].to_numpy(), 1)
        for k in range(MAX_LEN):
            real = X["hist_len"].to_numpy() > k
            np.add.at(expected, X[f"hist_{feature}_{k}"].to_numpy()[real], 1)
        np.testing.assert_array_equal(model.id_frequencies_[f], expected)


# ----------------------------------------------------------------------------- unseen ids
def test_unseen_ids_are_treated_as_unknown(ctr_data, fitted):
    model = fitted()
    X = ctr_data.X_test[ctr_data.X_test["hist_len"] > 0]
    item_size, cate_size = model.history_vocab_sizes_[:2]  # then the recency table
    unseen = {
        "user_id": model.sparse_vocab_sizes_[0] + 10**9,
        "item_id": item_size,  # the first id beyond the table
        "cate_id": cate_size + 12345,
        "hist_item_id_0": 2**40,
        "hist_cate_id_0": cate_size,
    }
    big, one = X.copy(), X.copy()
    for col, value in unseen.items():
        big[col] = np.int64(value)
        one[col] = 1
    proba = model.predict_proba(big)
    assert np.isfinite(proba).all()
    np.testing.assert_array_equal(proba, model.predict_proba(one))
    # Control: the substitution is not a no-op.
    assert np.abs(proba - model.predict_proba(X)).max() > 1e-6


@pytest.mark.parametrize(
    "dtype, value",
    [("uint64", np.uint64(2**64 - 1)), ("float64", 1e20)],
    ids=["uint64-hash", "float-huge"],
)
def test_ids_beyond_int64_range_are_unknown_too(ctr_data, fitted, dtype, value):
    """64-bit hashed ids (uint64) or float ids beyond int64 are unseen ids like any other."""
    model = fitted()
    X = ctr_data.X_test.iloc[:50]
    big, one = X.astype({"user_id": dtype, "item_id": dtype}), X.copy()
    big["user_id"] = value
    big["item_id"] = value
    one["user_id"] = 1
    one["item_id"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        proba = model.predict_proba(big)
    np.testing.assert_array_equal(proba, model.predict_proba(one))


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("as_series", [False, True])
def test_string_labels(ctr_data, as_series):
    y = np.where(ctr_data.y_train == 1, "click", "no")
    if as_series:
        y = pd.Series(y, index=ctr_data.X_train.index)
    model = DINClassifier(**SMALL).fit(ctr_data.X_train, y)
    np.testing.assert_array_equal(model.classes_, ["click", "no"])
    proba = model.predict_proba(ctr_data.X_train)
    assert proba.dtype == np.float64 and proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Column 1 is the probability of classes_[1] ("no", the sampled negatives).
    assert roc_auc_score(np.asarray(y) == "no", proba[:, 1]) > 0.65
    pred = model.predict(ctr_data.X_train)
    assert set(np.unique(pred)) <= {"click", "no"}
    np.testing.assert_array_equal(pred, model.classes_[(proba[:, 1] > 0.5).astype(int)])


def test_bool_labels(ctr_data):
    y = ctr_data.y_train.astype(bool)
    model = DINClassifier(**SMALL).fit(ctr_data.X_train, y)
    np.testing.assert_array_equal(model.classes_, [False, True])
    assert model.classes_.dtype == bool
    pred = model.predict(ctr_data.X_test)
    assert pred.dtype == bool
    proba = model.predict_proba(ctr_data.X_test)
    assert proba.dtype == np.float64 and proba.shape == (len(pred), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pred, proba[:, 1] > 0.5)
    assert roc_auc_score(ctr_data.y_train, model.predict_proba(ctr_data.X_train)[:, 1]) > 0.65


def test_three_classes_are_refused(ctr_data):
    y = np.arange(len(ctr_data.y_train)) % 3
    model = DINClassifier(**SMALL)
    with pytest.raises(ValueError, match=re.escape("Only binary classification is supported.")):
        model.fit(ctr_data.X_train, y)
    assert not model.initialized_


def test_one_class_is_refused(ctr_data):
    model = DINClassifier(**SMALL)
    with pytest.raises(ValueError, match="one class"):
        model.fit(ctr_data.X_train, np.ones(len(ctr_data.y_train), dtype=int))
    assert not model.initialized_


# ----------------------------------------------------------------------------- pipelines
def test_pipeline_equals_transformer_then_classifier(ctr_data):
    raw_train = ctr_data.train_rows.drop(columns="label")
    raw_test = ctr_data.test_rows.drop(columns="label")
    pipe = make_pipeline(SequenceFeatureTransformer(max_len=MAX_LEN), DINClassifier(**SMALL))
    pipe.fit(raw_train, ctr_data.train_rows["label"])
    proba = pipe.predict_proba(raw_test)
    assert roc_auc_score(ctr_data.y_test, proba[:, 1]) > 0.6
    direct = DINClassifier(**SMALL).fit(ctr_data.X_train, ctr_data.y_train)
    np.testing.assert_array_equal(proba, direct.predict_proba(ctr_data.X_test))


def test_grid_search_over_pipeline_by_user_groups(ctr_data):
    rows = ctr_data.train_rows
    rows = rows[rows["user_id"] % 2 == 0]  # half the users: faster
    pipe = make_pipeline(
        SequenceFeatureTransformer(max_len=MAX_LEN), DINClassifier(**{**SMALL, "max_epochs": 3})
    )
    grid = {
        "dinclassifier__embed_dim": [4, 8],
        "dinclassifier__hidden_units": [(16,), (32, 16)],
    }
    search = GridSearchCV(pipe, grid, scoring="roc_auc", cv=GroupKFold(n_splits=2))
    search.fit(rows.drop(columns="label"), rows["label"], groups=rows["user_id"])
    assert set(search.best_params_) == set(grid)
    assert search.best_params_["dinclassifier__embed_dim"] in (4, 8)
    assert search.best_params_["dinclassifier__hidden_units"] in [(16,), (32, 16)]
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.isfinite(scores).all() and (scores > 0.5).all()
    best = search.best_estimator_[-1]
    width = best.module_.history_embeddings[0].embedding_dim
    assert width == search.best_params_["dinclassifier__embed_dim"]


# ----------------------------------------------------------------------------- sparse embeddings
def _rows_unused_by(X, model, feature="item_id"):
    """Codes of ``feature``'s table that no row of X looks up (candidate or history)."""
    used = set(X[feature]) | set(X.filter(like=f"hist_{feature}_").to_numpy().ravel())
    size = model.history_vocab_sizes_[0]
    return np.array(sorted(set(range(2, size)) - used))


@pytest.mark.parametrize("sparse", [False, True])
def test_sparse_embeddings_move_only_the_rows_a_batch_uses(ctr_data, sparse):
    X, y = ctr_data.X_train, ctr_data.y_train
    model = DINClassifier(**{**SMALL, "max_epochs": 1, "sparse_embeddings": sparse}).fit(X, y)
    # A second pass over the rows of a few users: most items are not looked up at all.
    users = np.unique(ctr_data.train_rows["user_id"])[:5]
    part = ctr_data.train_rows["user_id"].isin(users).to_numpy()
    unused = _rows_unused_by(X[part], model)
    assert len(unused) > 20
    table = model.module_.history_embeddings[0].weight
    before = table.detach().clone()
    model.partial_fit(X[part], y[part])
    moved = (table.detach() - before)[unused].abs().amax(dim=1) > 0
    if sparse:
        assert not moved.any(), "a lazy update leaves rows the batches do not use"
    else:
        assert moved.all(), "Adam's moments keep every used-before row moving"


def test_sparse_embeddings_learn_like_dense_and_round_trip(ctr_data, tmp_path):
    X, y = ctr_data.X_train, ctr_data.y_train
    params = dict(SMALL, max_epochs=3, embedding_l2=0.01, attention_normalization=None)
    dense = DINClassifier(**params).fit(X, y)
    sparse = DINClassifier(**params, sparse_embeddings=True).fit(X, y)
    assert set(sparse._optimizers) == {"optimizer", "optimizer_embeddings"}
    assert sparse.module_.history_embeddings[0].sparse
    auc_dense = roc_auc_score(ctr_data.y_test, dense.predict_proba(ctr_data.X_test)[:, 1])
    auc_sparse = roc_auc_score(ctr_data.y_test, sparse.predict_proba(ctr_data.X_test)[:, 1])
    assert auc_sparse > 0.7 and abs(auc_sparse - auc_dense) < 0.03
    expected = sparse.predict_proba(ctr_data.X_test)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(sparse)).predict_proba(ctr_data.X_test), expected
    )
    save_model(sparse, tmp_path / "sparse.npz")
    np.testing.assert_array_equal(
        load_model(tmp_path / "sparse.npz").predict_proba(ctr_data.X_test), expected
    )
    refit = clone(sparse).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(ctr_data.X_test), expected)


def test_sparse_embeddings_compute_each_batch_once(ctr_data):
    # skorch passes its training closure to every optimizer: with the embeddings' own
    # optimizer a batch must still be computed once, and both optimizers must step.
    X, y = ctr_data.X_train, ctr_data.y_train
    model = DINClassifier(**{**SMALL, "max_epochs": 1, "sparse_embeddings": True}).fit(X, y)
    forwards = []
    model.module_.register_forward_hook(lambda m, i, o: forwards.append(m.training))
    steps = {"optimizer_": 0, "optimizer_embeddings_": 0}
    for name in steps:
        getattr(model, name).register_step_post_hook(
            lambda opt, a, k, name=name: steps.__setitem__(name, steps[name] + 1))
    model.partial_fit(X, y)
    n_batches = -(-len(X) // SMALL["batch_size"])
    assert sum(forwards) == n_batches
    assert steps == {"optimizer_": n_batches, "optimizer_embeddings_": n_batches}


def test_sparse_embeddings_refused_with_distributed(ctr_data):
    model = DINClassifier(**SMALL, sparse_embeddings=True, distributed=True)
    with pytest.raises(ValueError, match="sparse_embeddings=True is not supported with"):
        model.fit(ctr_data.X_train, ctr_data.y_train)


# ----------------------------------------------------------------------------- skorch params
def test_explicit_module_embed_dim_wins(ctr_data):
    model = DINClassifier(**{**SMALL, "embed_dim": 4}, module__embed_dim=6)
    model.fit(ctr_data.X_train, ctr_data.y_train)
    tables = [*model.module_.history_embeddings, *model.module_.sparse_embeddings]
    assert {t.embedding_dim for t in tables} == {6}
    assert model.get_params()["embed_dim"] == 4


def test_optimizer_weight_decay_via_set_params(ctr_data, fitted):
    model = DINClassifier(**SMALL).set_params(optimizer__weight_decay=0.5)
    model.fit(ctr_data.X_train, ctr_data.y_train)
    assert all(g["weight_decay"] == 0.5 for g in model.optimizer_.param_groups)
    assert model.get_params()["optimizer__weight_decay"] == 0.5
    plain = fitted()

    def norm(m):
        return sum(float(p.detach().norm() ** 2) for p in m.module_.parameters()) ** 0.5

    assert norm(model) < norm(plain), "weight decay must shrink the weights"
    # And it survives clone (it is a constructor parameter).
    assert clone(model).get_params()["optimizer__weight_decay"] == 0.5


def test_valid_split_logs_valid_loss_and_auc_with_string_labels(ctr_data):
    y = np.where(ctr_data.y_train == 1, "click", "no")
    model = DINClassifier(**SMALL, train_split=ValidSplit(0.2))
    model.fit(ctr_data.X_train, y)
    assert len(model.history) == SMALL["max_epochs"]
    for epoch in model.history:
        assert np.isfinite(epoch["valid_loss"])
        assert 0.5 < epoch["valid_auc"] <= 1.0
        assert epoch["valid_batch_count"] >= 1


class _SplitIterators(Callback):
    """Keeps the iterators the net builds for its training and validation rows (and, in
    epochs without validation rows, a refit's, for its training rows)."""

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if dataset_valid is None:
            self.refit = net.get_iterator(dataset_train, training=True)
            return
        self.train = net.get_iterator(dataset_train, training=True)
        self.valid = net.get_iterator(dataset_valid, training=False)


@pytest.mark.parametrize("split", [
    dict(early_stopping=True, refit=True),  # the internal split of each user's latest rows
    dict(early_stopping=False, train_split=ValidSplit(0.2, random_state=0)),
])
def test_a_split_trains_and_validates_on_the_frames_own_memory(ctr_data, split):
    """A split holds indices into X's arrays: gathering its rows up front would copy
    most of the training data (0.9x of the int arrays at validation_fraction=0.1)."""
    X, y = ctr_data.X_train, ctr_data.y_train
    seen = _SplitIterators()
    DINClassifier(**{**SMALL, "max_epochs": 1}, **split, callbacks=[seen]).fit(X, y)
    block = X.to_numpy()  # the transformer's int32 block itself (one block: a view)
    assert np.shares_memory(block, X["hist_item_id_0"].to_numpy())
    for iterator in (seen.train, seen.valid):
        for key in ("candidate", "history", "history_length"):
            assert np.shares_memory(iterator.inputs[key].numpy(), block), key
    assert 0 < seen.valid.n_rows < seen.train.n_rows
    assert seen.train.n_rows + seen.valid.n_rows == len(X)
    if split["early_stopping"]:  # the refit: every row, still in the frame's own memory
        assert seen.refit.n_rows == len(X)
        for key in ("candidate", "history", "history_length"):
            assert np.shares_memory(seen.refit.inputs[key].numpy(), block), key


def test_warm_start_continues_training(ctr_data):
    X, y = ctr_data.X_train, ctr_data.y_train
    model = DINClassifier(**SMALL, warm_start=True).fit(X, y)
    module = model.module_
    first_losses = model.history[:, "train_loss"]
    model.fit(X, y)
    assert len(model.history) == 2 * SMALL["max_epochs"]
    assert model.module_ is module, "warm start must not re-initialise the network"
    assert model.history[-1, "train_loss"] < first_losses[0]
    assert [e["epoch"] for e in model.history] == [1, 2, 3, 4]


def test_partial_fit_runs_more_epochs(ctr_data):
    X, y = ctr_data.X_train, ctr_data.y_train
    model = DINClassifier(**SMALL).fit(X, y)
    module = model.module_
    before = model.predict_proba(ctr_data.X_test)
    model.partial_fit(X, y)
    assert len(model.history) == 2 * SMALL["max_epochs"]
    assert model.module_ is module
    assert np.abs(model.predict_proba(ctr_data.X_test) - before).max() > 1e-6
    with pytest.raises(ValueError, match="not seen"):
        model.partial_fit(X, np.where(y == 1, 2, 0))
    fresh = DINClassifier(**SMALL).partial_fit(X, y)  # a first partial_fit fits
    assert len(fresh.history) == SMALL["max_epochs"]


# ----------------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_training(ctr_data):
    model = DINClassifier(**SMALL, device="cuda")
    with pytest.raises(ValueError, match="CUDA"):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.initialized_ and not hasattr(model, "module_")


@pytest.mark.parametrize("device", ["nonsense", "one-past-last-cuda", "cuda:999", "mps"])
def test_invalid_device_is_refused(ctr_data, device):
    if device == "one-past-last-cuda":
        device = f"cuda:{torch.cuda.device_count()}"
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    # "cuda:999" also on a CUDA machine: torch.device("cuda:999").index wraps to -25.
    model = DINClassifier(**SMALL, device=device)
    with pytest.raises(ValueError, match="device"):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.initialized_


@CUDA
def test_cuda_fit_matches_cpu_after_moving(ctr_data):
    model = DINClassifier(**SMALL, device="cuda").fit(ctr_data.X_train, ctr_data.y_train)
    assert next(model.module_.parameters()).is_cuda
    on_cuda = model.predict_proba(ctr_data.X_test)
    assert on_cuda.dtype == np.float64 and np.isfinite(on_cuda).all()
    model.module_.to("cpu")
    model.set_params(device="cpu")
    np.testing.assert_allclose(model.predict_proba(ctr_data.X_test), on_cuda, atol=1e-4, rtol=0)


@CUDA
def test_cuda_fit_is_reproducible(ctr_data):
    X, y = ctr_data.X_train, ctr_data.y_train
    first = DINClassifier(**SMALL, device="cuda").fit(X, y).predict_proba(ctr_data.X_test)
    second = DINClassifier(**SMALL, device="cuda").fit(X, y).predict_proba(ctr_data.X_test)
    np.testing.assert_allclose(first, second, atol=1e-5, rtol=0)


@CUDA
def test_cuda_pickle_loads_on_cpu(ctr_data, monkeypatch):
    model = DINClassifier(**SMALL, device="cuda").fit(ctr_data.X_train, ctr_data.y_train)
    on_cuda = model.predict_proba(ctr_data.X_test)
    blob = pickle.dumps(model)
    with monkeypatch.context() as patch:  # as if unpickled on a machine without CUDA
        patch.setattr(torch.cuda, "is_available", lambda: False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = pickle.loads(blob)
        assert torch.device(loaded.device).type == "cpu"
        assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
        assert all(b.device.type == "cpu" for b in loaded.module_.buffers())
        on_cpu = loaded.predict_proba(ctr_data.X_test)
    np.testing.assert_allclose(on_cpu, on_cuda, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- no history
def test_no_history_columns_warn(ctr_data):
    model = DINClassifier(**SMALL)
    with pytest.warns(NoHistoryWarning):
        model.fit(ctr_data.X_train[ITEM_ONLY], ctr_data.y_train)
    assert model.layout_.history_features == ()
    assert model.module_.attention is None
    assert model.predict_proba(ctr_data.X_test[ITEM_ONLY]).shape == (len(ctr_data.X_test), 2)


def test_numpy_input_warns_and_still_fits(ctr_data):
    X = ctr_data.X_train.to_numpy()
    model = DINClassifier(**SMALL)
    with pytest.warns(NoHistoryWarning):
        model.fit(X, ctr_data.y_train)
    assert model.n_features_in_ == X.shape[1]
    assert not hasattr(model, "feature_names_in_")
    proba = model.predict_proba(ctr_data.X_test.to_numpy())
    assert proba.shape == (len(ctr_data.X_test), 2) and np.isfinite(proba).all()


# ----------------------------------------------------------------------------- bad inputs
def _string_ids(X):
    X["item_id"] = X["item_id"].astype(str)
    return X


def _nan_id(X):
    X["hist_cate_id_2"] = X["hist_cate_id_2"].astype(float)
    X.loc[X.index[5], "hist_cate_id_2"] = np.nan
    return X


def _negative_id(X):
    X.loc[X.index[3], "user_id"] = -3
    return X


def _float_non_integer_id(X):
    X["cate_id"] = X["cate_id"].astype(float)
    X.loc[X.index[0], "cate_id"] = 2.5
    return X


def _nullable_na_id(X):
    X["hist_item_id_4"] = X["hist_item_id_4"].astype("Int64")
    X.loc[X.index[2], "hist_item_id_4"] = pd.NA
    return X


def _dense(value):
    def make(X):
        X["price"] = 1.0
        X.loc[X.index[7], "price"] = value
        return X

    return make


def _text_column(X):
    X["colour"] = "red"
    return X


BAD_INPUTS = {
    "string ids": (_string_ids, TypeError, ["item_id"]),
    "NaN id": (_nan_id, ValueError, ["hist_cate_id_2"]),
    "nullable NA id": (_nullable_na_id, ValueError, ["hist_item_id_4"]),
    "negative id": (_negative_id, ValueError, ["user_id", "negative"]),
    "fractional id": (_float_non_integer_id, ValueError, ["cate_id"]),
    "history gap": (lambda X: X.drop(columns="hist_item_id_3"), ValueError,
                    ["hist_item_id_3", "gap"]),
    "different lengths": (lambda X: X.drop(columns=f"hist_cate_id_{MAX_LEN - 1}"), ValueError,
                          ["different lengths", "item_id", "cate_id"]),
    "no candidate": (lambda X: X.drop(columns="cate_id"), ValueError, ["cate_id", "candidate"]),
    "NaN dense": (_dense(np.nan), ValueError, ["price"]),
    "inf dense": (_dense(np.inf), ValueError, ["price"]),
    "text column": (_text_column, TypeError, ["colour"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_raise_naming_the_column(ctr_data, case):
    make_bad, error, fragments = BAD_INPUTS[case]
    X = make_bad(ctr_data.X_train.copy())
    model = DINClassifier(**SMALL)
    with pytest.raises(error) as info:
        model.fit(X, ctr_data.y_train)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert not model.initialized_, "the error must come before training"


@pytest.mark.parametrize(
    "case", ["string ids", "NaN id", "nullable NA id", "negative id", "fractional id"]
)
def test_predict_checks_ids_too(ctr_data, fitted, case):
    make_bad, error, fragments = BAD_INPUTS[case]
    X = make_bad(ctr_data.X_train.copy())
    with pytest.raises(error, match=re.escape(fragments[0])):
        fitted().predict_proba(X)


def test_predict_refuses_missing_columns(ctr_data, fitted):
    with pytest.raises(ValueError, match="hist_len"):
        fitted().predict_proba(ctr_data.X_test.drop(columns="hist_len"))


def test_x_y_length_mismatch(ctr_data):
    model = DINClassifier(**SMALL)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(ctr_data.X_train, ctr_data.y_train[:-1])
    assert not model.initialized_


def test_empty_frame(ctr_data):
    model = DINClassifier(**SMALL)
    with pytest.raises(ValueError, match="0 rows"):
        model.fit(ctr_data.X_train.iloc[:0], ctr_data.y_train[:0])
    assert not model.initialized_


@pytest.mark.parametrize(
    "param, value",
    [
        ("activation", "tanh"),
        ("embed_dim", -1),
        ("attention_units", ()),
        ("attention_units", (8, 0)),
        ("hidden_units", (16, -2)),
        ("dropout", 1.5),
        ("pooling", "max"),
        ("attention_normalization", "sparsemax"),
        ("attention_embedding_gradient", 1.5),
        ("attention_embedding_gradient", -0.1),
        ("attention_length_scale", "yes"),
        ("attention_position", "yes"),
        ("attention_sink", "yes"),
        ("behaviour_dropout", 1.0),
        ("behaviour_dropout", -0.1),
    ],
)
def test_bad_hyperparameters_raise_before_training(ctr_data, param, value):
    model = DINClassifier(**{**SMALL, param: value})
    with pytest.raises(ValueError, match=param):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.initialized_ and not hasattr(model, "module_")


def test_an_insisted_sink_without_softmax_is_refused_and_auto_goes_without(ctr_data):
    raw = {**SMALL, "attention_normalization": None}
    with pytest.raises(ValueError, match="attention_sink=True needs softmax attention"):
        DINClassifier(**raw, attention_sink=True).fit(ctr_data.X_train, ctr_data.y_train)
    # the default, "auto", fits the paper's raw scores without a sink
    model = DINClassifier(**raw).fit(ctr_data.X_train, ctr_data.y_train)
    assert model.attention_sink == "auto" and model.module_.sink_logit is None


# ----------------------------------------------------------------------------- extra columns
def _with_extra_columns(X, seed=0):
    rng = np.random.default_rng(seed)
    X = X.copy()
    X["price"] = rng.normal(size=len(X))
    X["shop_id"] = rng.integers(0, 10, size=len(X))
    return X


def test_dense_and_categorical_columns(ctr_data, fitted):
    X = _with_extra_columns(ctr_data.X_train)
    model = DINClassifier(**SMALL, categorical_cols=("shop_id",)).fit(X, ctr_data.y_train)
    base = fitted()
    assert model.layout_.dense_cols == ("price",)
    assert model.layout_.sparse_cols == ("user_id", "shop_id")
    assert len(model.module_.sparse_embeddings) == len(base.module_.sparse_embeddings) + 1
    assert model.module_.sparse_embeddings[-1].num_embeddings == int(X["shop_id"].max()) + 1
    width = model.module_.mlp[0].in_features
    assert width == base.module_.mlp[0].in_features + SMALL["embed_dim"] + 1
    X_test = _with_extra_columns(ctr_data.X_test, seed=1)
    proba = model.predict_proba(X_test)
    assert np.isfinite(proba).all()
    shifted = X_test.assign(price=X_test["price"] + 3.0)
    assert np.abs(model.predict_proba(shifted) - proba).max() > 1e-6, "price is an input"
    # Without categorical_cols the integer column is a numeric feature.
    plain = DINClassifier(**SMALL).fit(X, ctr_data.y_train)
    assert plain.layout_.dense_cols == ("price", "shop_id")
    assert len(plain.module_.sparse_embeddings) == len(base.module_.sparse_embeddings)


def test_missing_categorical_column_raises(ctr_data):
    model = DINClassifier(**SMALL, categorical_cols=("shop_id",))
    with pytest.raises(ValueError, match="shop_id"):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.initialized_
