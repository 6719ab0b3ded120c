"""Inputs that gave silent garbage, obscure crashes or resource blow-ups, refused clearly.

Issue 14, items 6-9, 13-15, 17 and 18 (each with the rest of its class). Every test
here failed on 0.1.0.
"""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream
from sklearn_din._behaviour_store import BehaviourStore
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives
from sklearn_din.metrics import gauc_score, rela_impr

torch.set_num_threads(1)
SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1, verbose=0,
             random_state=0)
LOG = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 7], "cate_id": 1,
                    "time": [1, 2, 3, 4]})


@pytest.fixture(scope="module")
def frame(small_frame):
    return small_frame


# ------------------------------------------------- 6: values beyond float32's range
def test_numeric_values_beyond_float32_are_refused_at_predict_as_at_fit(frame):
    X, y = frame
    model = DINClassifier(**SMALL).fit(X.assign(price=1.0), y)
    with pytest.raises(ValueError, match="'price' has values beyond float32's range"):
        model.predict_proba(X.assign(price=1e39))
    with pytest.raises(ValueError, match="'price' has values beyond float32's range"):
        DINClassifier(**SMALL).fit(X.assign(price=-1e39), y)


def test_a_finite_input_that_overflows_the_network_is_refused_not_nan(frame):
    X, y = frame
    model = DINClassifier(**{**SMALL, "activation": "relu"}).fit(X.assign(price=1.0), y)
    with torch.no_grad():  # a network whose output overflows to NaN for huge inputs
        model.module_.mlp[0].weight.fill_(1e30)
    with pytest.raises(ValueError, match="output is NaN for .* row"):
        model.predict_proba(X.assign(price=3e38))


# ------------------------------------------------------- 7: unscaled numeric inputs
# Numeric features fed to the MLP as they are (standardize_numeric=False, 0.1's behaviour).
RAW = {**SMALL, "standardize_numeric": False}


def test_a_raw_unix_time_as_a_feature_is_refused_before_training(frame):
    X, y = frame
    model = DINClassifier(**RAW)
    with pytest.raises(ValueError, match="'ts' reaches 1.7e\\+09.*Standardise it"):
        model.fit(X.assign(ts=1.7e9 + np.arange(len(X))), y)
    assert not model.initialized_


def test_moderately_unscaled_inputs_warn_and_scaled_ones_do_not(frame):
    X, y = frame
    with pytest.warns(UserWarning, match="'price' reaches 5e\\+03"):
        DINClassifier(**RAW).fit(X.assign(price=np.linspace(0, 5000, len(X))), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DINClassifier(**RAW).fit(X.assign(price=np.linspace(-3, 3, len(X))), y)


def test_standardized_numeric_inputs_need_neither_the_warning_nor_the_refusal(frame):
    # By default the network standardises them, so their scale is no longer the user's
    # problem: the same columns fit silently, and the network reads them centred.
    X, y = frame
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = DINClassifier(**SMALL).fit(
            X.assign(price=np.linspace(0, 5000, len(X)), ts=1.7e9 + np.arange(len(X))), y)
    np.testing.assert_allclose(model.dense_mean_, [2500, 1.7e9 + (len(X) - 1) / 2])
    np.testing.assert_allclose(model.dense_scale_[0], np.linspace(0, 5000, len(X)).std())


def test_fit_stream_refuses_an_unscaled_column_of_any_chunk(frame):
    X, y = frame
    rows = X.assign(label=y, ts=0.5)
    rows.loc[rows.index[-1], "ts"] = 1.7e9  # only in the last chunk
    chunks = [rows.iloc[: len(rows) // 2], rows.iloc[len(rows) // 2:]]
    with pytest.raises(ValueError, match="'ts' reaches 1.7e\\+09"):
        fit_stream(DINClassifier(**RAW), chunks)


# --------------------------------------------------------------- 8: gauc_score
@pytest.mark.parametrize("scores, groups, pattern", [
    ([np.nan, 0.5, 0.2, 0.3], [1, 1, 2, 2], "y_score contains NaN"),
    ([np.inf, 0.5, 0.2, 0.3], [1, 1, 2, 2], "y_score contains infinity"),
    ([0.1, 0.5, 0.2, 0.3], [1, 1, None, None], "groups has missing values"),
    ([0.1, 0.5, 0.2, 0.3], [1.0, 1.0, np.nan, np.nan], "groups has missing values"),
], ids=["nan-score", "inf-score", "none-group", "nan-group"])
def test_gauc_refuses_what_roc_auc_refuses(scores, groups, pattern):
    with pytest.raises(ValueError, match=pattern):
        gauc_score([0, 1, 0, 1], scores, groups=groups)


def test_gauc_of_no_rows_and_rela_impr_of_nonsense_are_refused():
    with pytest.raises(ValueError, match="no rows"):
        gauc_score([], [], groups=[])
    with pytest.raises(InvalidParameterError, match="'auc_base'"):
        rela_impr(0.7, float("nan"))
    with pytest.raises(InvalidParameterError, match="'auc'"):
        rela_impr(1.5, 0.6)


# ------------------------------------------------ 9: prefixed module parameters
@pytest.mark.parametrize("params, exc, pattern", [
    ({"module__embed_dim": 0}, InvalidParameterError, "'module__embed_dim'"),
    ({"module__hidden_units": (-4,)}, ValueError, "module__hidden_units must be a tuple"),
    ({"module__attention_units": ()}, ValueError, "module__attention_units must have"),
    ({"module__dropout": 1.5}, InvalidParameterError, "'module__dropout'"),
    ({"module__activation": "tanh"}, InvalidParameterError, "'module__activation'"),
    ({"module__pooling": "max"}, InvalidParameterError, "'module__pooling'"),
    ({"module__embed_dims": 4}, ValueError, "module__embed_dims.*not parameters"),
    ({"module__sparse_gradients": True}, ValueError, "sparse_embeddings=True"),
    ({"module__n_dense": 3}, ValueError, "module__n_dense=3"),
    ({"module__history_vocab_sizes": (3, 3)}, ValueError, "module__history_vocab_sizes"),
    ({"module__sparse_vocab_sizes": (2,)}, ValueError, "module__sparse_vocab_sizes"),
    ({"iterator_train__batch_size": 8}, ValueError, "iterator_train__batch_size.*no effect"),
    ({"optimizer__lr": -1.0}, InvalidParameterError, "'optimizer__lr'"),
    ({"optimizer__typo": 1}, TypeError, "typo.*check the .*optimizer__\\* parameters"),
    ({"optimizer__betas": (2.0, 0.9)}, ValueError, "beta.*optimizer__\\* parameters"),
    ({"callbacks__nosuch__x": 1}, ValueError, "callbacks__nosuch__\\* names no callback"),
    ({"criterion__reduction": "bogus"}, ValueError, "reduction .*criterion__"),
    ({"threshold": 2.0}, InvalidParameterError, "'threshold'"),
    ({"warm_start": "yes"}, InvalidParameterError, "'warm_start'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_prefixed_and_skorch_parameters_are_validated_before_training(frame, params, exc,
                                                                     pattern):
    X, y = frame
    model = DINClassifier(**{**SMALL, **params})
    with pytest.raises(exc, match=pattern):
        model.fit(X, y)
    assert not hasattr(model, "module_") or not model.initialized_


def test_valid_prefixed_module_parameters_still_win(frame):
    X, y = frame
    model = DINClassifier(**SMALL, module__embed_dim=6).fit(X, y)
    assert model.module_.history_embeddings[0].embedding_dim == 6


# ------------------------------------------------------ 13: raw ids as embeddings
@pytest.mark.parametrize("column, value", [("user_id", 10**9), ("item_id", 2**62),
                                           ("hist_item_id_0", 10**9)])
def test_raw_ids_far_above_the_row_count_are_refused_naming_the_column(frame, column, value):
    X, y = frame
    X = X.astype({column: np.int64})
    X.loc[X.index[0], column] = value
    feature = column.replace("hist_", "").rsplit("_", 1)[0] if column.startswith("hist_") \
        else column
    with pytest.raises(ValueError, match=f"'{feature}'.*SequenceFeatureTransformer"):
        DINClassifier(**SMALL, user_embedding=True).fit(X, y)  # the user's table too


def test_codes_of_a_transformer_fit_on_more_rows_are_fine(frame):
    X, y = frame
    X = X.copy()
    X.loc[X.index[0], "item_id"] = 100_000  # a big but reasonable vocabulary
    DINClassifier(**SMALL).fit(X, y)


# ------------------------------------------------------------------ 14: max_len
def test_max_len_is_bounded():
    with pytest.raises(InvalidParameterError, match="'max_len'.*10000"):
        SequenceFeatureTransformer(max_len=10**12).fit(LOG)


def test_history_gather_memory_is_linear_in_max_len():
    store = BehaviourStore.from_arrays(np.array([2, 2, 3]), np.array([1, 2, 3]),
                                       np.full((3, 2), 2, dtype=np.int32))
    assert len(store.keys) == 3  # sorts the store outside the measurement
    tracemalloc.start()
    try:
        codes, lengths = store.histories(np.array([2, 3]), np.array([5, 5]), 100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the output is 2 x 2 x 100k int32 (1.6 MB); 0.1.0's prefix mask asked for 9.3 GiB
    assert peak < 16 << 20, peak
    assert lengths.tolist() == [2, 1] and codes[0, 0, :3].tolist() == [2, 2, 0]


def test_a_long_max_len_transforms_a_small_log():
    transformer = SequenceFeatureTransformer(max_len=10_000)
    out = transformer.fit_transform(LOG)
    assert out.shape == (4, len(transformer.get_feature_names_out())) and out.shape[1] > 20_000
    assert out["hist_len"].tolist() == [0, 1, 0, 1]


# ----------------------------------------------- 15: arrays after a DataFrame fit
def test_an_array_after_a_dataframe_fit_is_read_by_position(frame):
    X, y = frame
    model = DINClassifier(**SMALL).fit(X, y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        proba = model.predict_proba(X.to_numpy())
    np.testing.assert_array_equal(proba, model.predict_proba(X))
    with pytest.raises(ValueError, match="features"):
        model.predict_proba(X.to_numpy()[:, :-1])


def test_a_dataframe_after_an_array_fit_is_read_by_position():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DINClassifier(**SMALL).fit(X, y)
    with pytest.warns(UserWarning, match="X has feature names"):
        proba = model.predict_proba(pd.DataFrame(X, columns=["a", "b", "c"]))
    np.testing.assert_array_equal(proba, model.predict_proba(X))


# ---------------------------------------------------------- 17: labels of two types
def test_fit_stream_names_the_chunk_whose_labels_changed_type(frame):
    X, y = frame
    rows = X.assign(label=y)
    half = len(rows) // 2
    chunks = [rows.iloc[:half], rows.iloc[half:].assign(label=lambda d: d["label"].map(
        {0: "skip", 1: "click"}))]
    with pytest.raises(ValueError, match="chunk 1: the label column 'label' holds strings but "
                                         "earlier chunks held numbers"):
        fit_stream(DINClassifier(**SMALL), chunks)


def test_fit_stream_takes_booleans_for_0_1_labels(frame):
    X, y = frame
    rows = X.assign(label=y)
    half = len(rows) // 2
    chunks = [rows.iloc[:half], rows.iloc[half:].assign(label=lambda d: d["label"] == 1)]
    model = fit_stream(DINClassifier(**SMALL), chunks)
    assert model.classes_.tolist() == [0, 1]


def test_labels_of_mixed_types_are_refused_by_fit(frame):
    X, y = frame
    mixed = y.astype(object)
    mixed[y == 1] = "1"
    with pytest.raises(ValueError, match=r"y mixes labels of different types \['int', 'str'\]"):
        DINClassifier(**SMALL).fit(X, mixed)
    model = DINClassifier(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="y holds strings but the first fit's labels"):
        model.partial_fit(X, np.where(y == 1, "a", "b"))


# ---------------------------------------------------------- 18: dataset helpers
@pytest.mark.parametrize("kwargs, pattern", [
    ({"n_users": 2.5}, "'n_users'"),
    ({"n_items": "10"}, "'n_items'"),
    ({"mean_events": float("nan")}, "'mean_events'"),
    ({"mean_events": float("inf")}, "'mean_events'"),
    ({"recency_weight": float("nan")}, "'recency_weight'"),
    ({"interest_weight": 2}, "'interest_weight'"),
    ({"random_state": "seed"}, "'random_state'"),
])
def test_make_interactions_validates_its_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_interactions(**kwargs)


def test_sample_negatives_takes_ids_of_mixed_types_and_validates_its_arguments():
    log = LOG.assign(user_id=[1, 1, "1", "1"])  # two users: 1 and "1"
    rows = sample_negatives(log, random_state=0)
    assert len(rows) == 8 and rows["label"].sum() == 4
    assert set(map(repr, rows["user_id"])) == {"1", "'1'"}
    for kwargs, pattern in [({"n_negatives": 1.5}, "'n_negatives'"),
                            ({"user_col": 3}, "'user_col'"),
                            ({"label_col": "time"}, "already a column"),
                            ({"item_attribute_cols": ("item_id",)}, "distinct columns")]:
        with pytest.raises(ValueError, match=pattern):
            sample_negatives(LOG, **kwargs)
    with pytest.raises(ValueError, match="'user_col'"):
        leave_last_out_split(LOG, user_col=None)
