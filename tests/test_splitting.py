"""Early stopping's split: chosen users' latest rows, never a user's past after its future."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from skorch.callbacks import Callback

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din._splitting import latest_rows_split
from sklearn_din.datasets import make_interactions, sample_negatives


def test_every_training_row_of_a_user_is_strictly_before_its_validation_rows():
    """Checked on real times: the transformer's output and the log it came from."""
    log = make_interactions(n_users=400, n_items=300, mean_events=15, random_state=3)
    rows = sample_negatives(log, random_state=3)
    X = SequenceFeatureTransformer(max_len=8).fit_transform(rows.drop(columns="label"),
                                                            rows["label"])
    train, valid = latest_rows_split(X["user_id"].to_numpy(), X["hist_len"].to_numpy(), 0.1,
                                     np.random.RandomState(0))
    assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == len(X)
    assert 0.1 <= len(valid) / len(X) < 0.13
    times = rows["time"].to_numpy()
    users = rows["user_id"].to_numpy()
    last_train = pd.Series(times[train]).groupby(users[train]).max()
    first_valid = pd.Series(times[valid]).groupby(users[valid]).min()
    both = first_valid.index.intersection(last_train.index)
    assert len(both) > 10  # users with rows on both sides exist (capped and uncapped ones)
    assert (last_train[both] < first_valid[both]).all()
    # A click and its sampled negative (same user, same time) are never split apart.
    side = np.zeros(len(X), dtype=bool)
    side[valid] = True
    assert pd.Series(side).groupby([users, times]).nunique().max() == 1


def test_the_latest_rows_of_a_user_are_its_longest_histories():
    users = np.array([7, 7, 7, 7, 9, 9, 9])
    lengths = np.array([0, 1, 2, 2, 0, 0, 3])
    train, valid = latest_rows_split(users, lengths, 0.99, np.random.RandomState(0))
    # A target above what the latest rows hold takes every user's latest rows, no more.
    assert valid.tolist() == [2, 3, 6] and train.tolist() == [0, 1, 4, 5]


def test_heavy_users_are_validated_only_when_light_users_cannot_fill_the_split():
    """A capped heavy user's latest rows (all its full-history rows) would be most of the
    validation rows; it trains on them instead while light users can fill the split."""
    light = np.repeat(np.arange(100), 4)  # 100 users: 2 earlier rows, 2 latest rows
    light_lengths = np.tile([0, 0, 1, 1], 100)
    heavy = np.repeat([500, 501], 300)  # 2 users: 10 rows, then 290 with a full history
    heavy_lengths = np.tile(np.minimum(np.arange(300) // 2, 5), 2)
    users = np.concatenate([light, heavy])
    lengths = np.concatenate([light_lengths, heavy_lengths])
    for seed in range(5):
        train, valid = latest_rows_split(users, lengths, 0.05, np.random.RandomState(seed))
        assert 50 <= len(valid) <= 52  # 5% of 1,000 rows, the last user's pair included
        assert not np.isin(users[valid], [500, 501]).any()
        assert np.isin(users[train], [500, 501]).sum() == 600
        # ... and the rule changes nothing else: the light users' latest rows only.
        assert (lengths[valid] == 1).all()
    # Without light users to fill it, the heavy users' latest rows are the split.
    train, valid = latest_rows_split(heavy, heavy_lengths, 0.3, np.random.RandomState(0))
    assert len(valid) == 290 and (heavy_lengths[valid] == 5).all()


def test_same_random_state_same_split_and_without_users_a_row_split():
    lengths = np.random.RandomState(0).randint(0, 5, size=200)
    users = np.repeat(np.arange(40), 5)
    a = latest_rows_split(users, lengths, 0.2, np.random.RandomState(1))
    b = latest_rows_split(users, lengths, 0.2, np.random.RandomState(1))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    train, valid = latest_rows_split(None, lengths, 0.2, np.random.RandomState(1))
    assert len(valid) == 40 and len(train) == 160


@pytest.fixture(scope="module")
def big_rows():
    """A log large enough (> 10,000 rows) for early_stopping="auto" to switch on."""
    log = make_interactions(n_users=700, n_items=300, mean_events=8, random_state=1)
    rows = sample_negatives(log, random_state=1)
    X = SequenceFeatureTransformer(max_len=10).fit_transform(rows.drop(columns="label"),
                                                             rows["label"])
    return X, rows["label"].to_numpy()


FAST = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), lr=3e-2, batch_size=2048,
            verbose=0, random_state=0)


def test_auto_stops_early_and_keeps_the_best_epoch(big_rows):
    X, y = big_rows
    assert len(X) >= 10_000
    model = DINClassifier(max_epochs=40, n_iter_no_change=1, **FAST).fit(X, y)
    assert model.do_early_stopping_
    scores = model.history[:, "valid_auc"]
    assert len(scores) < 40  # it stopped: lr 3e-2 overfits long before 40 epochs
    assert scores[-1] <= max(scores[:-1])
    # The weights kept are the best epoch's: its validation AUC is reproduced exactly on
    # the split's rows (the users' latest rows, drawn with the model's random_state).
    _, valid = latest_rows_split(X["user_id"].to_numpy(), X["hist_len"].to_numpy(), 0.1,
                                 np.random.RandomState(0))
    best = model.predict_proba(X.iloc[valid])[:, 1]
    assert roc_auc_score(y[valid], best) == pytest.approx(max(scores))


@pytest.mark.parametrize("batch_size", [40, 100])
def test_auto_patience_waits_about_400_steps_and_at_least_2_epochs(big_rows, batch_size):
    X, y = big_rows
    train, _ = latest_rows_split(X["user_id"].to_numpy(), X["hist_len"].to_numpy(), 0.1,
                                 np.random.RandomState(0))
    steps = -(-len(train) // batch_size)
    expected = max(2, round(400 / steps))
    assert expected == (2 if batch_size == 40 else 4)  # the fixture is sized for both cases
    model = DINClassifier(max_epochs=40, **{**FAST, "batch_size": batch_size}).fit(X, y)
    assert model.n_iter_no_change == "auto" and model.n_iter_no_change_ == expected
    # Training stopped exactly that many epochs after the best one (the first maximum).
    scores = model.history[:, "valid_auc"]
    assert len(scores) < 40
    assert len(scores) - 1 - int(np.argmax(scores)) == expected


def test_an_int_patience_is_used_as_given_and_none_without_early_stopping(big_rows):
    X, y = big_rows
    # At 5 steps an epoch, "auto" averaging (0.15) climbs for all 40 epochs: 0.3 stops.
    model = DINClassifier(max_epochs=40, n_iter_no_change=3, weight_averaging=0.3,
                          **FAST).fit(X, y)
    scores = model.history[:, "valid_auc"]
    assert model.n_iter_no_change_ == 3 and len(scores) - 1 - int(np.argmax(scores)) == 3
    model.set_params(early_stopping=False, max_epochs=1).fit(X, y)
    assert model.n_iter_no_change_ is None


class _EpochEndWeights(Callback):
    """Each epoch's raw weights after its last training step (before validation)."""

    def on_train_begin(self, net, **kwargs):
        self.epochs = []

    def on_batch_end(self, net, training=None, **kwargs):
        if training:
            self.latest = [t.detach().clone() for t in net.module_.state_dict().values()
                           if t.is_floating_point()]

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append(self.latest)

    def kept_average_is(self, model, share):
        """Whether the model holds the moving average, with ``share`` an epoch, of these
        raw weights up to its best epoch (the one early stopping restored)."""
        best = int(np.argmax(model.history[:, "valid_auc"]))
        return _holds(model, _average(self.epochs[:best + 1], share))


def _average(epochs, share):
    """The moving average, with ``share`` an epoch, of these epochs' weights."""
    average = epochs[0]
    for weights in epochs[1:]:
        average = [torch.lerp(a, w, share) for a, w in zip(average, weights, strict=True)]
    return average


def _holds(model, weights):
    """Whether the model's floating-point state is exactly ``weights``."""
    kept = [t for t in model.module_.state_dict().values() if t.is_floating_point()]
    return all(torch.equal(k, w) for k, w in zip(kept, weights, strict=True))


def test_weight_averaging_keeps_the_best_epochs_average_and_trains_on_the_raw_weights(
        big_rows):
    X, y = big_rows
    raw = _EpochEndWeights()
    model = DINClassifier(max_epochs=40, n_iter_no_change=2, callbacks=[("raw", raw)],
                          weight_averaging=0.3, **FAST).fit(X, y)
    assert model.weight_averaging_ == 0.3
    best = int(np.argmax(model.history[:, "valid_auc"]))
    assert best < len(model.history) - 1  # early stopping restored an earlier epoch
    assert raw.kept_average_is(model, 0.3)
    # Training goes on from the raw weights: the same steps as without averaging.
    plain = DINClassifier(max_epochs=40, n_iter_no_change=2, weight_averaging=None,
                          **FAST).fit(X, y)
    n = min(len(plain.history), len(model.history))
    assert plain.history[:n, "train_loss"] == model.history[:n, "train_loss"]
    assert plain.history[:n, "valid_auc"] != model.history[:n, "valid_auc"]


@pytest.mark.parametrize("batch_size, n_rows, expected", [
    (1024, 200_000, 0.3),                         # 176 steps: the Amazon logs' share, clipped
    (1024, 80_000, 1 - 0.5 ** (71 / 300)),        # 71 steps (90% of 80,000 rows train)
    (1024, 20_000, 0.15),                         # 18 steps: clipped from below
    (100, 20_000, 0.3),                           # 180 steps
])
def test_auto_weight_averaging_has_a_half_life_of_300_steps_clipped_to_015_03(
        batch_size, n_rows, expected):
    model = DINClassifier(batch_size=batch_size)
    assert model.weight_averaging == "auto"
    assert model._averaging_share(int(0.9 * n_rows)) == pytest.approx(expected)
    assert model.set_params(weight_averaging=0.5)._averaging_share(n_rows) == 0.5
    assert model.set_params(weight_averaging=1.0)._averaging_share(n_rows) is None
    assert model.set_params(weight_averaging=None)._averaging_share(n_rows) is None


def test_a_fit_records_the_share_it_averaged_with_and_keeps_that_average(big_rows):
    X, y = big_rows
    raw = _EpochEndWeights()
    model = DINClassifier(max_epochs=40, n_iter_no_change=2, callbacks=[("raw", raw)],
                          **{**FAST, "batch_size": 100, "lr": 1e-2}).fit(X, y)
    train, _ = latest_rows_split(X["user_id"].to_numpy(), X["hist_len"].to_numpy(), 0.1,
                                 np.random.RandomState(0))
    steps = -(-len(train) // 100)
    assert model.weight_averaging_ == pytest.approx(1 - 0.5 ** (steps / 300))
    assert 0.15 < model.weight_averaging_ < 0.3  # the fixture is sized for the unclipped case
    best = int(np.argmax(model.history[:, "valid_auc"]))
    assert best < len(model.history) - 1  # early stopping restored an earlier epoch
    assert raw.kept_average_is(model, model.weight_averaging_)
    model.set_params(early_stopping=False, max_epochs=1).fit(X, y)
    assert model.weight_averaging_ is None


class _TrainingRows(Callback):
    """The rows of each training step of the last training run."""

    def on_train_begin(self, net, **kwargs):
        self.rows = []

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            self.rows.append(len(batch[1]))


def test_refit_trains_a_fresh_network_on_every_row_for_the_epochs_early_stopping_kept(
        big_rows):
    X, y = big_rows
    params = dict(max_epochs=40, n_iter_no_change=2, weight_averaging=0.3,
                  **{**FAST, "batch_size": 1000})
    raw, rows = _EpochEndWeights(), _TrainingRows()
    model = DINClassifier(**{**params, "refit": True},
                          callbacks=[("raw", raw), ("rows", rows)]).fit(X, y)
    first = DINClassifier(**params).fit(X, y)
    kept = int(np.argmax(first.history[:, "valid_auc"])) + 1
    assert kept < len(first.history)  # early stopping kept an earlier epoch
    assert model.refit_epochs_ == kept and first.refit_epochs_ is None
    # The history: early stopping's epochs as without the refit, then the refit's, marked.
    n_first = len(first.history)
    assert len(model.history) == n_first + kept
    assert model.history[:n_first, "valid_auc"] == first.history[:, "valid_auc"]
    assert [e.get("refit", False) for e in model.history] == [False] * n_first + [True] * kept
    assert model.history[:, "epoch"] == list(range(1, n_first + kept + 1))
    assert "valid_auc" not in model.history[-1]
    # The refit trains on every row (the validation rows included)...
    assert sum(rows.rows) == kept * len(X)
    # ... from the start and in the batch order of a fit without early stopping, and keeps
    # the moving average of its epochs' weights with the first fit's share.
    plain = DINClassifier(**{**params, "early_stopping": False, "max_epochs": kept}).fit(X, y)
    assert model.history[n_first:, "train_loss"] == plain.history[:, "train_loss"]
    assert _holds(model, _average(raw.epochs, 0.3))
    assert not np.allclose(model.predict_proba(X), first.predict_proba(X))
    # Same random_state, same refit.
    again = DINClassifier(**{**params, "refit": True}).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_refit_is_opt_in_and_skipped_without_early_stopping_or_on_a_warm_start(big_rows):
    X, y = big_rows
    default = DINClassifier(max_epochs=40, n_iter_no_change=1, **FAST).fit(X, y)
    assert default.refit is False and default.refit_epochs_ is None
    assert not any(e.get("refit") for e in default.history)
    params = {**FAST, "refit": True, "max_epochs": 2}
    off = DINClassifier(**params, early_stopping=False).fit(X, y)
    assert off.refit_epochs_ is None and len(off.history) == 2
    small = DINClassifier(**params).fit(X.iloc[:5000], y[:5000])  # "auto": too few rows
    assert small.refit_epochs_ is None and len(small.history) == 2
    # A warm start continues the network it has: no fresh one is trained over it.
    warm = DINClassifier(**params, early_stopping=False).fit(X, y)
    warm.set_params(warm_start=True, early_stopping=True).fit(X, y)
    assert warm.refit_epochs_ is None and len(warm.history) == 4
    assert not any(e.get("refit") for e in warm.history)
    # partial_fit after a refit: more epochs of the refit network, no stale refit count.
    model = DINClassifier(**params).fit(X, y)
    assert model.refit_epochs_ >= 1
    model.partial_fit(X, y)
    assert model.refit_epochs_ is None


def test_refit_trains_on_every_row_whatever_the_given_train_split(big_rows):
    from skorch.dataset import ValidSplit
    X, y = big_rows
    rows = _TrainingRows()
    model = DINClassifier(max_epochs=2, early_stopping=True, train_split=ValidSplit(5),
                          callbacks=[("rows", rows)], **{**FAST, "refit": True})
    model.fit(X.iloc[:3000], y[:3000])
    assert sum(rows.rows) == model.refit_epochs_ * 3000


def test_weight_averaging_of_one_or_without_early_stopping_changes_nothing(big_rows):
    X, y = big_rows
    one = DINClassifier(max_epochs=3, weight_averaging=1.0, **FAST).fit(X, y)
    off = DINClassifier(max_epochs=3, weight_averaging=None, **FAST).fit(X, y)
    assert one.history[:, "valid_auc"] == off.history[:, "valid_auc"]
    np.testing.assert_array_equal(one.predict_proba(X), off.predict_proba(X))
    small = X.iloc[:5000], y[:5000]  # early_stopping="auto" is off below 10,000 rows
    on = DINClassifier(max_epochs=2, **FAST).fit(*small)
    off = DINClassifier(max_epochs=2, weight_averaging=None, **FAST).fit(*small)
    np.testing.assert_array_equal(on.predict_proba(X), off.predict_proba(X))


def test_off_trains_exactly_max_epochs_on_every_row(big_rows):
    X, y = big_rows
    model = DINClassifier(max_epochs=3, early_stopping=False, **FAST).fit(X, y)
    assert not model.do_early_stopping_
    assert len(model.history) == 3 and "valid_auc" not in model.history[-1]
    small = DINClassifier(max_epochs=2, **FAST).fit(X.iloc[:5000], y[:5000])
    assert not small.do_early_stopping_ and len(small.history) == 2  # "auto": too few rows


def test_a_given_train_split_is_what_early_stopping_watches(big_rows):
    from skorch.dataset import ValidSplit
    X, y = big_rows
    model = DINClassifier(max_epochs=2, early_stopping=True, train_split=ValidSplit(5),
                          **FAST).fit(X.iloc[:3000], y[:3000])
    assert model.do_early_stopping_ and "valid_auc" in model.history[-1]


def test_partial_fit_does_not_stop_early(big_rows):
    X, y = big_rows
    model = DINClassifier(max_epochs=1, early_stopping=True, **FAST)
    model.partial_fit(X, y)
    assert not model.do_early_stopping_ and "valid_auc" not in model.history[-1]


def test_one_class_validation_is_refused_before_training():
    X = pd.DataFrame({"user_id": [2, 3] * 20, "item_id": 2, "hist_item_id_0": 0,
                      "hist_len": [0] * 38 + [1, 1]})
    X["hist_item_id_0"] = X["hist_len"] * 2
    y = np.array([0, 1] * 19 + [1, 1])
    with pytest.raises(ValueError, match="validation rows of the internal split hold one class"):
        DINClassifier(early_stopping=True, validation_fraction=0.01, **FAST).fit(X, y)


@pytest.mark.parametrize("params, match", [
    ({"early_stopping": "yes"}, "early_stopping"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"n_iter_no_change": 0}, "n_iter_no_change"),
    ({"n_iter_no_change": "soon"}, "n_iter_no_change"),
    ({"weight_averaging": 0.0}, "weight_averaging"),
    ({"weight_averaging": 1.5}, "weight_averaging"),
    ({"weight_averaging": "always"}, "weight_averaging"),
    ({"refit": "yes"}, "refit"),
])
def test_parameters_are_validated(params, match):
    X = pd.DataFrame({"user_id": [2, 3], "item_id": [2, 3]})
    with pytest.raises(ValueError, match=match):
        DINClassifier(**params).fit(X, [0, 1])
