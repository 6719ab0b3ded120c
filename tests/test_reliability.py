"""Interruption, checkpoints, streaming prediction and random inputs."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skorch.callbacks import Callback, Checkpoint

import sklearn_din._classifier as classifier_module
from sklearn_din import DINClassifier, NonFiniteLossError, SequenceFeatureTransformer

SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), verbose=0, random_state=0)


@pytest.fixture(scope="module")
def frame(small_frame):
    return small_frame


class InterruptAtEpoch(Callback):
    """Simulates Ctrl-C at the start of an epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_leaves_a_usable_model_and_warm_start_resumes(frame):
    X, y = frame
    model = DINClassifier(max_epochs=5, callbacks=[("stop", InterruptAtEpoch(3))], **SMALL)
    model.fit(X, y)  # interrupted in epoch 3: fit returns, as after Ctrl-C
    completed = [row for row in model.history if "train_loss" in row]
    assert len(completed) == 2
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()

    model.set_params(warm_start=True, max_epochs=2, callbacks=None)
    model.fit(X, y)
    assert sum("train_loss" in row for row in model.history) == 4
    assert not np.array_equal(model.predict_proba(X), proba)


def test_checkpoint_recipe_restores_the_best_epoch(frame, tmp_path):
    from skorch.dataset import ValidSplit

    X, y = frame
    checkpoint = Checkpoint(monitor="valid_loss_best", dirname=str(tmp_path), load_best=True)
    model = DINClassifier(max_epochs=3, train_split=ValidSplit(4), callbacks=[checkpoint],
                          **SMALL).fit(X, y)
    best = int(np.argmin(model.history[:, "valid_loss"]))
    assert (tmp_path / "params.pt").exists()

    restored = DINClassifier(max_epochs=3, **SMALL)
    restored.partial_fit(X, y)  # learns the layout, then the saved weights replace its own
    restored.load_params(f_params=str(tmp_path / "params.pt"))
    np.testing.assert_allclose(restored.predict_proba(X), model.predict_proba(X), atol=1e-6)
    assert 0 <= best < 3


def test_prediction_streams_in_chunks(frame, monkeypatch):
    X, y = frame
    model = DINClassifier(max_epochs=1, **SMALL).fit(X, y)
    whole = model.predict_proba(X)
    monkeypatch.setattr(classifier_module, "PREDICT_CHUNK_ROWS", 97)
    calls = []
    original = model._network_inputs
    monkeypatch.setattr(model, "_network_inputs",
                        lambda chunk, method: calls.append(len(chunk)) or original(chunk, method))
    np.testing.assert_allclose(model.predict_proba(X), whole, rtol=1e-6)
    assert max(calls) == 97 and sum(calls) == len(X)


column = st.sampled_from(["user_id", "item_id", "hist_item_id_0", "hist_item_id_1", "hist_len",
                          "price", "hist_item_id_3"])
values = st.one_of(
    st.integers(-3, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(column, min_size=1, max_size=6, unique=True),
    n_rows=st.integers(0, 12),
    data=st.data(),
)
def test_random_frames_give_a_clear_error_or_finite_probabilities(names, n_rows, data):
    columns = {name: data.draw(st.lists(values, min_size=n_rows, max_size=n_rows))
               for name in names}
    X = pd.DataFrame(columns)
    y = np.arange(n_rows) % 2
    model = DINClassifier(max_epochs=1, batch_size=4, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X, y)
        except NonFiniteLossError as error:  # e.g. a numeric column of 1e20: a clear stop
            assert "epoch" in str(error)
            return
        except (ValueError, TypeError) as error:
            assert str(error)  # a message, raised by our checks before training
            assert not model.initialized_
            return
        proba = model.predict_proba(X)
    assert proba.shape == (n_rows, 2)
    assert np.isfinite(proba).all()


def test_concurrent_predictions_match_serial_ones(frame):
    from concurrent.futures import ThreadPoolExecutor

    X, y = frame
    model = DINClassifier(max_epochs=1, activation="dice", **SMALL).fit(X, y)
    expected = model.predict_proba(X)
    parts = np.array_split(np.arange(len(X)), 8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda rows: model.predict_proba(X.iloc[rows]), parts * 3))
    for rows, proba in zip(parts * 3, results, strict=True):
        np.testing.assert_allclose(proba, expected[rows], rtol=1e-5)
    # Dice's running statistics are untouched by inference
    np.testing.assert_array_equal(model.predict_proba(X), expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(["user_id", "item_id", "cate_id", "time", "price"]),
                   min_size=1, max_size=5, unique=True),
    n_rows=st.integers(0, 10),
    data=st.data(),
)
def test_random_frames_give_the_transformer_a_clear_error_or_a_valid_result(names, n_rows,
                                                                            data):
    X = pd.DataFrame({name: data.draw(st.lists(values, min_size=n_rows, max_size=n_rows))
                      for name in names})
    y = data.draw(st.one_of(st.none(), st.just(np.arange(n_rows) % 2)))
    transformer = SequenceFeatureTransformer(max_len=3)
    try:
        out = transformer.fit_transform(X, y)
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert len(out) == n_rows and list(out.columns) == list(transformer.get_feature_names_out())
    created = out[transformer.get_feature_names_out()[: 3 + 2 * 3 + 1]]
    assert (created.to_numpy() >= 0).all()
    assert (out["hist_len"] <= 3).all()
