"""The torch network (_network): Dice, the local activation unit, attention and pooling.

The attention tests read the network of a fitted DINClassifier (``module_.attend``);
the others build the modules directly.
"""

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_din import (
    AttentionScorer,
    DeepInterestNetwork,
    Dice,
    DINClassifier,
    DotProductScorer,
    LocalActivationUnit,
    load_model,
    save_model,
)

MAX_LEN = 20
# As in test_classifier: small and fast, but enough to learn something in two epochs.
SMALL = dict(
    embed_dim=4, attention_units=(8,), hidden_units=(16,), lr=1e-2, max_epochs=2,
    batch_size=512, verbose=0, random_state=0, user_embedding=True,
)


@pytest.fixture(scope="module")
def fitted(ctr_data):
    """fitted(**params): a DINClassifier fit on the training rows, cached per params."""
    cache = {}

    def fit(**params):
        key = tuple(sorted(params.items()))
        if key not in cache:
            cache[key] = DINClassifier(**{**SMALL, **params}).fit(ctr_data.X_train,
                                                                   ctr_data.y_train)
        return cache[key]

    return fit


def _network_tensors(model, X):
    """The network's input tensors for X, as the classifier builds them."""
    arrays = model.layout_.to_arrays(X, model.history_vocab_sizes_, model.sparse_vocab_sizes_)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _attend(model, X):
    """(query, pooled, weights, history_length) of the fitted network on X, in eval mode."""
    t = _network_tensors(model, X)
    model.module_.eval()
    with torch.no_grad():
        query, pooled, weights = model.module_.attend(
            t["candidate"], t["history"], t["history_length"]
        )
    return query, pooled, weights, t["history_length"].long()


# ----------------------------------------------------------------------------- attention
def test_softmax_attention_weights_sum_to_one_and_padding_weighs_zero(ctr_data, fitted):
    model = fitted(attention_normalization="softmax")
    _, pooled, weights, length = _attend(model, ctr_data.X_test)
    assert weights.shape == (len(length), int(length.max()))
    real = torch.arange(weights.shape[1])[None, :] < length[:, None]
    assert torch.all(weights[~real] == 0)
    assert torch.all(weights >= 0)
    has_history = length > 0
    assert has_history.sum() > 0
    torch.testing.assert_close(
        weights[has_history].sum(dim=1), torch.ones(int(has_history.sum())), atol=1e-5, rtol=0
    )
    # The weights depend on the content: not a uniform average over the history.
    long_rows = length >= 5
    spread = weights[long_rows].max(dim=1).values - (weights[long_rows].sum(1) / length[long_rows])
    assert spread.max() > 1e-3


def test_raw_attention_weights_are_unnormalised_and_padding_weighs_zero(ctr_data, fitted):
    model = fitted(attention_normalization=None)
    X = ctr_data.X_test
    _, pooled, weights, length = _attend(model, X)
    real = torch.arange(weights.shape[1])[None, :] < length[:, None]
    assert torch.all(weights[~real] == 0)
    sums = weights[length > 0].sum(dim=1)
    assert (sums - 1).abs().max() > 1e-2, "raw scores (the paper's default) are not softmaxed"
    # The pooled history is the weighted sum of the real positions' embeddings.
    t = _network_tensors(model, X)
    i = int(torch.argmax(length))
    n = int(length[i])
    # The item and category features, then the recency context feature (conftest's default).
    tables = model.module_.embedding_tables()[:3]
    assert len(model.module_.history_embeddings) + len(model.module_.context_embeddings) == 3
    with torch.no_grad():
        keys = torch.cat([tables[f](t["history"][i, f, :n].long()) for f in range(3)], dim=1)
    torch.testing.assert_close(pooled[i], weights[i, :n] @ keys, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_sum_and_mean_pooling_weights(ctr_data, fitted, pooling):
    model = fitted(pooling=pooling)
    assert model.module_.attention is None
    _, _, weights, length = _attend(model, ctr_data.X_test)
    real = torch.arange(weights.shape[1])[None, :] < length[:, None]
    expected = torch.ones_like(weights) if pooling == "sum" else (
        1.0 / length.clamp(min=1)[:, None].float()).expand_as(weights)
    torch.testing.assert_close(weights[real], expected[real])
    assert torch.all(weights[~real] == 0)


@pytest.mark.parametrize("normalization", [None, "softmax"])
def test_empty_history_rows_give_finite_outputs(ctr_data, fitted, normalization):
    model = fitted(attention_normalization=normalization)
    empty = ctr_data.X_test.copy()
    empty["hist_len"] = 0  # every history position becomes padding
    proba = model.predict_proba(empty)
    assert np.isfinite(proba).all()
    assert ((proba > 0) & (proba < 1)).all()
    _, pooled, weights, _ = _attend(model, empty)
    assert weights.shape[1] == 0
    assert torch.all(pooled == 0)
    # Mixed batch: empty rows next to rows with history.
    mixed = ctr_data.X_test.copy()
    mixed.loc[mixed.index[::2], "hist_len"] = 0
    assert np.isfinite(model.predict_proba(mixed)).all()
    _, pooled, weights, length = _attend(model, mixed)
    assert weights.shape[1] > 0
    assert torch.all(weights[length == 0] == 0), "empty rows weigh nothing (not NaN)"
    assert torch.all(pooled[length == 0] == 0)


@pytest.mark.parametrize("normalization", [None, "softmax"])
def test_training_on_only_empty_histories_is_finite(ctr_data, normalization):
    X = ctr_data.X_train.copy()
    X["hist_len"] = 0
    model = DINClassifier(attention_normalization=normalization, **SMALL)
    model.fit(X, ctr_data.y_train)
    assert np.isfinite(model.history[:, "train_loss"]).all()
    assert np.isfinite(model.predict_proba(ctr_data.X_test)).all()


# ----------------------------------------------------------------------------- Dice
def _dice_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g) * torch.tensor([1.0, 3.0, 1.0]) + torch.tensor(
        [0.0, 2.0, 0.0]
    )
    # A channel with a variance close to eps = 1e-8: eps must be the paper's.
    x[:, 2] = torch.tensor([0.0, 1e-4, 0.0, 1e-4, 0.0, 1e-4])
    return x


def _dice_by_hand(x, alpha, mean, var, eps=1e-8):
    p = torch.sigmoid((x - mean) / torch.sqrt(var + eps))
    return p * x + (1 - p) * alpha * x


def test_dice_alpha_starts_at_zero_per_channel():
    dice = Dice(5)
    assert isinstance(dice.alpha, nn.Parameter)
    assert dice.alpha.shape == (5,)
    assert torch.all(dice.alpha == 0)
    assert not [n for n, _ in dice.named_parameters() if n != "alpha"], "no affine scale/shift"


def test_dice_matches_paper_formula_with_batch_statistics_in_training():
    x = _dice_batch()
    dice = Dice(3).train()
    alpha = torch.tensor([0.25, -0.5, 2.0])
    with torch.no_grad():
        dice.alpha.copy_(alpha)
    out = dice(x)
    expected = _dice_by_hand(x, alpha, x.mean(0), x.var(0, unbiased=False))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_dice_training_depends_on_the_batch_and_updates_running_stats():
    x = _dice_batch()
    dice = Dice(3).train()
    # Same running-statistics rule as BatchNorm without affine parameters.
    reference = nn.BatchNorm1d(3, affine=False, momentum=0.1, eps=1e-8).train()
    first = dice(x)
    reference(x)
    torch.testing.assert_close(dice.running_mean, reference.running_mean)
    torch.testing.assert_close(dice.running_var, reference.running_var)
    assert not torch.allclose(dice.running_mean, torch.zeros(3))
    other = x.clone()
    other[1:] = other[1:] * 3 + 1  # same row 0, different batch mates
    assert not torch.allclose(dice(other)[0], first[0])


def test_dice_inference_uses_running_stats_and_is_batch_independent():
    x = _dice_batch()
    dice = Dice(3).train()
    for _ in range(5):
        dice(x * 2 + 1)
    alpha = torch.tensor([0.1, 0.2, -0.3])
    with torch.no_grad():
        dice.alpha.copy_(alpha)
    dice.eval()
    before = (dice.running_mean.clone(), dice.running_var.clone())
    out = dice(x)
    expected = _dice_by_hand(x, alpha, dice.running_mean, dice.running_var)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    rows = torch.cat([dice(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(rows, out, atol=0, rtol=0)
    other = x.clone()
    other[1:] = other[1:] * 3 + 1
    torch.testing.assert_close(dice(other)[0], out[0], atol=0, rtol=0)
    assert torch.equal(dice.running_mean, before[0]) and torch.equal(dice.running_var, before[1])


def test_dice_inference_without_autograd_is_the_same_function_and_keeps_its_input():
    # Under no_grad Dice takes an in-place path (predict's hot loop); it must compute the
    # same values as the autograd path and must not write into the caller's tensor.
    x = _dice_batch()
    dice = Dice(3).train()
    dice(x * 2 + 1)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.1, 0.7, -0.3]))
    dice.eval()
    with_grad = dice(x)
    assert with_grad.requires_grad
    copy = x.clone()
    with torch.no_grad():
        without_grad = dice(x)
    assert torch.equal(x, copy)
    torch.testing.assert_close(without_grad, with_grad.detach(), atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- local activation
@pytest.mark.parametrize("activation", ["relu", "prelu", "dice"])
@pytest.mark.parametrize("training", [True, False])
def test_local_activation_unit_equals_linear_on_concat(activation, training):
    torch.manual_seed(0)
    dim = 6
    unit = LocalActivationUnit(dim, (5, 3), activation).train(training)
    with torch.no_grad():
        unit.first.bias.normal_()
    query = torch.randn(4, dim)
    keys = torch.randn(11, dim)
    rows = torch.randint(0, 4, (11,))
    with torch.no_grad():
        got = unit(query, keys, rows)
        q = query[rows]
        hidden = unit.first(torch.cat([q, keys, q - keys, q * keys], dim=1))
        expected = unit.score(unit.rest(unit.first_activation(hidden))).squeeze(1)
    assert got.shape == (11,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)



def test_network_refuses_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        DeepInterestNetwork((10, 5), pooling="max")


# ----------------------------------------------------------------------------- scorers
class _Cosine(AttentionScorer):
    """A scorer of the user's own, as the AttentionScorer docstring shows."""

    def __init__(self, dim, context_dim=0, **_):
        super().__init__()
        self.dim = dim

    def forward(self, query, keys, rows):
        return torch.cosine_similarity(query.index_select(0, rows), keys[:, : self.dim], dim=1)


def test_dot_product_scorer_scores_and_shares_as_its_definition():
    torch.manual_seed(0)
    scorer = DotProductScorer(6, context_dim=2)
    query, keys = torch.randn(4, 6), torch.randn(11, 8)
    rows = torch.randint(0, 4, (11,))
    expected = (query[rows] * keys[:, :6]).sum(1) / 6 ** 0.5
    torch.testing.assert_close(scorer(query, keys, rows), expected)
    shared = scorer.score_shared(query, keys)
    torch.testing.assert_close(shared, query @ keys[:, :6].T / 6 ** 0.5)
    # The default score_shared (forward over every pair) agrees with the fast one.
    torch.testing.assert_close(AttentionScorer.score_shared(scorer, query, keys), shared)


@pytest.mark.parametrize("scorer", ["dot", DotProductScorer, _Cosine])
def test_a_swapped_scorer_trains_predicts_and_keeps_padding_out(ctr_data, fitted, scorer):
    model = fitted(attention_scorer=scorer)
    expected = DotProductScorer if scorer == "dot" else scorer
    assert type(model.module_.attention) is expected
    assert np.isfinite(model.history[:, "train_loss"]).all()
    _, _, weights, length = _attend(model, ctr_data.X_test)
    real = torch.arange(weights.shape[1])[None, :] < length[:, None]
    assert torch.all(weights[~real] == 0)
    has_history = length > 0
    torch.testing.assert_close(weights[has_history].sum(dim=1),  # softmax, the default
                               torch.ones(int(has_history.sum())), atol=1e-5, rtol=0)
    # Another scorer is another model: its predictions differ from the default's.
    default = fitted().predict_proba(ctr_data.X_test)
    assert np.abs(model.predict_proba(ctr_data.X_test) - default).max() > 1e-4


def test_the_scorer_is_a_parameter_clone_and_grid_search_build_anew(ctr_data):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    model = DINClassifier(**{**SMALL, "max_epochs": 1}, attention_scorer="dot")
    assert clone(model).get_params()["attention_scorer"] == "dot"
    search = GridSearchCV(model, {"attention_scorer": ["local_activation", "dot", _Cosine]},
                          cv=2, scoring="roc_auc").fit(ctr_data.X_train, ctr_data.y_train)
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # module__attention_scorer wins over the flat parameter, as every network setting.
    explicit = DINClassifier(**{**SMALL, "max_epochs": 1}, module__attention_scorer="dot")
    explicit.fit(ctr_data.X_train, ctr_data.y_train)
    assert isinstance(explicit.module_.attention, DotProductScorer)


def test_built_in_scorers_round_trip_and_others_are_refused(ctr_data, fitted, tmp_path):
    for scorer in ("dot", DotProductScorer, LocalActivationUnit):
        model = fitted(attention_scorer=scorer)
        path = tmp_path / "model.npz"
        save_model(model, path)
        loaded = load_model(path)
        assert loaded.attention_scorer == scorer
        np.testing.assert_array_equal(loaded.predict_proba(ctr_data.X_test),
                                      model.predict_proba(ctr_data.X_test))
    with pytest.raises(TypeError, match=r"attention_scorer=.*_Cosine.* cannot be saved"):
        save_model(fitted(attention_scorer=_Cosine), tmp_path / "custom.npz")


@pytest.mark.parametrize(("value", "error"), [("mlp", "attention_scorer"),
                                              (int, "attention_scorer must be one of")])
def test_a_bad_scorer_is_refused_before_training(ctr_data, value, error):
    model = DINClassifier(**SMALL, attention_scorer=value)
    with pytest.raises(ValueError, match=error):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.initialized_


@pytest.mark.parametrize("params", [
    {}, {"attention_scorer": "dot"}, {"attention_scorer": _Cosine},
    {"pooling": "sum"}, {"pooling": "mean"}, {"attention_normalization": None},
    {"attention_scorer": "dot", "attention_normalization": "mean"},
], ids=repr)
def test_every_scorer_gives_one_function_on_the_three_forward_paths(params):
    # forward (training, predict_proba), forward_masked (export) and forward_shared_history
    # (serving) score through the same scorer: the same logits.
    torch.manual_seed(0)
    net = DeepInterestNetwork([30, 6], [9], 2, context_vocab_sizes=[8], embed_dim=4,
                              attention_units=(6,), hidden_units=(5,), **params).eval()
    n, max_len, real = 5, 7, 4
    history = torch.zeros(n, 3, max_len, dtype=torch.long)
    history[:, 0, :real] = torch.randint(2, 30, (real,))
    history[:, 1, :real] = torch.randint(2, 6, (real,))
    history[:, 2, :real] = torch.randint(2, 8, (real,))
    history[:, :, real:] = 5  # padding content must not matter
    candidate = torch.stack([torch.randint(2, 30, (n,)), torch.randint(2, 6, (n,))], dim=1)
    sparse, dense = torch.randint(2, 9, (n, 1)), torch.randn(n, 2)
    length = torch.full((n,), real)
    with torch.no_grad():
        expected = net(candidate, history, length, sparse, dense)
        torch.testing.assert_close(net.forward_masked(candidate, history, length, sparse, dense),
                                   expected, atol=1e-5, rtol=1e-5)
        shared = net.forward_shared_history(candidate, history[0, :, :real], sparse, dense)
        torch.testing.assert_close(shared, expected, atol=1e-5, rtol=1e-5)
