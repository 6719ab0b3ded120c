"""The torch network (_network): Dice (and its fused training node), the local activation
unit, attention, pooling, and the serving paths' agreement with the training forward.

The attention tests read the network of a fitted DINClassifier (``module_.attend``);
the others build the modules directly.
"""

import copy
import itertools

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
    MeanPooling,
    load_model,
    save_model,
)
from sklearn_din._network import _DiceFunction, drop_behaviours

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
    # The plain softmax; the sink's weights are tested against it below.
    model = fitted(attention_normalization="softmax", attention_sink=False)
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


def test_local_activation_units_gradients_are_those_of_linear_on_concat():
    # The training path adds the rows' part of the first layer in place (addmm_): the
    # gradients of every weight and input must be those of the layer as defined.
    torch.manual_seed(0)
    dim = 6
    unit = LocalActivationUnit(dim, (5, 3), "prelu")
    reference = copy.deepcopy(unit)
    query, keys = torch.randn(4, dim, requires_grad=True), torch.randn(11, dim, requires_grad=True)
    rows = torch.randint(0, 4, (11,))
    weights = torch.randn(11)
    (unit(query, keys, rows) * weights).sum().backward()
    got = [query.grad, keys.grad, *(p.grad for p in unit.parameters())]
    query.grad = keys.grad = None
    q = query[rows]
    hidden = reference.first(torch.cat([q, keys, q - keys, q * keys], dim=1))
    scores = reference.score(reference.rest(reference.first_activation(hidden))).squeeze(1)
    (scores * weights).sum().backward()
    expected = [query.grad, keys.grad, *(p.grad for p in reference.parameters())]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
    # Under autocast (which casts only out-of-place ops) the layer still runs.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = unit(query, keys, rows)
    torch.testing.assert_close(low.float(), scores.detach(), atol=0.1, rtol=0.05)



@pytest.mark.parametrize("context", [False, True], ids=["own slot", "with recency"])
def test_attention_position_feeds_the_scorer_its_bucket_and_only_the_scorer(context):
    torch.manual_seed(0)
    net = DeepInterestNetwork([30, 6], context_vocab_sizes=[9] if context else [],
                              embed_dim=4, attention_units=(6,), hidden_units=(5,),
                              attention_position=True, attention_normalization="softmax")
    # The k-th most recent behaviour (k = position + 1) by buckets 1, 2-3, 4-7, ..., 64+.
    positions = torch.tensor([0, 1, 2, 3, 6, 7, 14, 15, 30, 31, 62, 63, 200])
    width = 12 if context else 8
    keys = torch.randn(len(positions), width)
    scored = net._scored_keys(keys, positions, 201)
    position = net.position_embedding(torch.tensor([1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]))
    assert torch.equal(scored[:, :8], keys[:, :8])
    if context:  # added to the first context feature's embedding
        assert scored.shape == keys.shape and net.attention.context_dim == 4
        torch.testing.assert_close(scored[:, 8:], keys[:, 8:] + position)
    else:  # a context slot of its own
        assert net.attention.context_dim == 4
        assert torch.equal(scored[:, 8:], position)
    # The scores read it; the pooled value stays a weighted mean of the behaviours' own
    # embeddings.
    candidate = torch.tensor([[3, 2], [4, 5]])
    history = torch.randint(2, 6, (2, 3 if context else 2, 5))
    length = torch.tensor([5, 3])
    with torch.no_grad():
        _, pooled, weights = net.attend(candidate, history, length)
        net.position_embedding.weight.mul_(-3.0)
        _, _, other = net.attend(candidate, history, length)
    assert not torch.allclose(weights, other)
    keys = net._embed_features(history.transpose(1, 2))
    torch.testing.assert_close(pooled, (weights[:, :, None] * keys).sum(dim=1))
    # Pooling has no scorer, so no position embedding.
    for pooling in ("sum", "mean"):
        assert DeepInterestNetwork([30, 6], pooling=pooling,
                                   attention_position=True).position_embedding is None


def test_attention_position_leaves_the_other_weights_initial_values_alone():
    torch.manual_seed(3)
    plain = DeepInterestNetwork([30, 6], context_vocab_sizes=[9], embed_dim=4)
    torch.manual_seed(3)
    with_position = DeepInterestNetwork([30, 6], context_vocab_sizes=[9], embed_dim=4,
                                        attention_position=True)
    state = with_position.state_dict()
    assert {k for k in state if k not in plain.state_dict()} == {"position_embedding.weight"}
    for name, value in plain.state_dict().items():
        assert torch.equal(state[name], value), name


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
    # softmax with its sink, the defaults: every real row's weights sum to less than 1
    assert model.module_.sink_logit is not None
    sums = weights[has_history].sum(dim=1)
    assert torch.all(sums > 0) and torch.all(sums < 1)
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
    {"attention_length_scale": True}, {"attention_length_scale": True, "pooling": "mean"},
    {"attention_sink": True, "attention_normalization": "softmax"},
    {"attention_sink": True, "attention_normalization": "softmax",
     "attention_length_scale": True},
    {"attention_position": True}, {"attention_position": True, "attention_scorer": "dot"},
    {"attention_position": True, "attention_sink": True,
     "attention_normalization": "softmax", "attention_length_scale": True},
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
        if net.length_log_scale is not None:
            net.length_log_scale.copy_(torch.linspace(-1.0, 1.5, 6))  # far from 1
        if net.sink_logit is not None:
            net.sink_logit.fill_(0.7)  # far from its start, 0
        expected = net(candidate, history, length, sparse, dense)
        torch.testing.assert_close(net.forward_masked(candidate, history, length, sparse, dense),
                                   expected, atol=1e-5, rtol=1e-5)
        shared = net.forward_shared_history(candidate, history[0, :, :real], sparse, dense)
        torch.testing.assert_close(shared, expected, atol=1e-5, rtol=1e-5)


def test_standardized_dense_inputs_are_the_plain_networks_on_standardized_values():
    # dense_mean / dense_scale: the network reads (dense - mean) / scale on every path, and
    # holds both as saved buffers (in the weights a model file keeps).
    mean, scale = torch.tensor([1500.0, -3.0]), torch.tensor([400.0, 0.25])
    kwargs = dict(embed_dim=4, attention_units=(6,), hidden_units=(5,))
    torch.manual_seed(0)
    plain = DeepInterestNetwork([30, 6], [9], 2, **kwargs).eval()
    scaled = DeepInterestNetwork([30, 6], [9], 2, dense_mean=mean.tolist(),
                                 dense_scale=scale.tolist(), **kwargs).eval()
    assert {"dense_mean", "dense_scale"} <= set(scaled.state_dict())
    scaled.load_state_dict({**plain.state_dict(), "dense_mean": mean, "dense_scale": scale})
    n, real = 4, 3
    history = torch.zeros(n, 2, 5, dtype=torch.long)
    history[:, 0, :real], history[:, 1, :real] = torch.randint(2, 30, (real,)), 3
    candidate = torch.stack([torch.randint(2, 30, (n,)), torch.full((n,), 2)], dim=1)
    sparse, raw = torch.randint(2, 9, (n, 1)), mean + scale * torch.randn(n, 2)
    length = torch.full((n,), real)
    with torch.no_grad():
        expected = plain(candidate, history, length, sparse, (raw - mean) / scale)
        torch.testing.assert_close(scaled(candidate, history, length, sparse, raw), expected)
        torch.testing.assert_close(
            scaled.forward_masked(candidate, history, length, sparse, raw), expected,
            atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            scaled.forward_shared_history(candidate, history[0, :, :real], sparse, raw),
            expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one value per numeric input"):
        DeepInterestNetwork([30, 6], [9], 2, dense_mean=[0.0], dense_scale=[1.0], **kwargs)
    with pytest.raises(ValueError, match="dense_scale finite and positive"):
        DeepInterestNetwork([30, 6], [9], 2, dense_mean=[0.0, 0.0], dense_scale=[1.0, 0.0],
                            **kwargs)


# ------------------------------------------------------------------ serving paths
# forward_masked and forward_shared_history compute the function of the training forward.
CONFIGS = [*itertools.product(("dice", "prelu"), (None, "softmax", "mean"), ("attention",)),
           *itertools.product(("dice", "prelu"), (None,), ("sum", "mean"))]
CONTEXT_SIZE = 6  # a context feature of the behaviours (the recency bucket), table size


def _random_network(activation, normalization, pooling, *, batch_norm=False, seed=0):
    torch.manual_seed(seed)
    # attention_length_scale: its learnt scales, drawn below, enter every attention path.
    net = DeepInterestNetwork([30, 7], [11, 5], 3, context_vocab_sizes=[CONTEXT_SIZE],
                              embed_dim=4, attention_units=(12, 6),
                              hidden_units=(16, 8), activation=activation,
                              attention_normalization=normalization, pooling=pooling,
                              batch_norm=batch_norm, attention_length_scale=True)
    # Weights and running statistics far from their initial values, so that every term
    # (Dice's gate, PReLU's slope, the softmax) matters.
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.4)
        for module in net.modules():
            if hasattr(module, "running_mean"):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _random_batch(n_rows=40, max_len=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(0, max_len + 1, (n_rows,), generator=g)
    length[:2] = torch.tensor([0, max_len])  # an empty and a full history
    history = torch.randint(1, 30, (n_rows, 3, max_len), generator=g)  # item, category, context
    history[:, 1] %= 7
    history[:, 2] %= CONTEXT_SIZE
    real = torch.arange(max_len)[None, :] < length[:, None]
    history = history * real[:, None, :]
    return {
        "candidate": torch.randint(0, 7, (n_rows, 2), generator=g),
        "history": history,
        "history_length": length,
        "sparse": torch.randint(0, 5, (n_rows, 2), generator=g),
        "dense": torch.randn(n_rows, 3, generator=g),
    }


@pytest.mark.parametrize(("activation", "normalization", "pooling"), CONFIGS)
def test_masked_forward_equals_forward(activation, normalization, pooling):
    net = _random_network(activation, normalization, pooling, batch_norm=pooling == "sum")
    batch = _random_batch()
    with torch.no_grad():
        expected = net(**batch)
        masked = net.forward_masked(**batch)
        # what the padding holds is never read: garbage ids, even beyond the tables
        garbage = batch["history"].clone()
        pad = torch.arange(garbage.shape[2])[None, :] >= batch["history_length"][:, None]
        garbage[pad[:, None, :].expand_as(garbage)] = 10_000
        masked_garbage = net.forward_masked(**{**batch, "history": garbage})
    assert expected.abs().max() > 0.2  # a logit scale where a wrong term would show
    torch.testing.assert_close(masked, expected, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(masked_garbage, masked, rtol=0, atol=0)


def test_masked_forward_with_autograd_takes_the_same_path():
    """torch.export traces with autograd on: Dice's plain path must agree too."""
    net = _random_network("dice", "softmax", "attention").requires_grad_(False)
    batch = _random_batch()
    with torch.no_grad():
        expected = net(**batch)
    torch.testing.assert_close(net.forward_masked(**batch), expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize(("activation", "normalization", "pooling"), CONFIGS)
def test_shared_history_forward_equals_forward_on_repeated_rows(activation, normalization,
                                                                 pooling):
    net = _random_network(activation, normalization, pooling)
    batch = _random_batch()
    n_rows = len(batch["candidate"])
    for row in (0, 1, 5):  # empty, full and partial history
        length = int(batch["history_length"][row])
        history = batch["history"][row : row + 1].expand(n_rows, -1, -1)
        with torch.no_grad():
            expected = net(batch["candidate"], history,
                           batch["history_length"][row : row + 1].expand(n_rows),
                           batch["sparse"], batch["dense"])
            shared = net.forward_shared_history(
                batch["candidate"], batch["history"][row, :, :length], batch["sparse"],
                batch["dense"])
        torch.testing.assert_close(shared, expected, rtol=1e-5, atol=2e-5)


def test_attention_sink_weights_are_the_softmax_times_the_supports_gate():
    # exp(s_i) / (exp(b) + sum_j exp(s_j)) = softmax(s)_i * sigmoid(logsumexp(s) - b): the
    # weights keep softmax's proportions and sum to less than 1; rows without history get
    # none, and no NaN reaches the gradient.
    torch.manual_seed(0)
    net = DeepInterestNetwork([30, 7], embed_dim=4, attention_units=(6,), hidden_units=(4,),
                              attention_normalization="softmax", attention_sink=True)
    plain, raw = (DeepInterestNetwork([30, 7], embed_dim=4, attention_units=(6,),
                                      hidden_units=(4,), attention_normalization=norm)
                  for norm in ("softmax", None))
    for other in (plain, raw):
        other.load_state_dict({k: v for k, v in net.state_dict().items() if k != "sink_logit"})
    batch = _random_batch(n_rows=12, max_len=6)
    length = batch["history_length"].clone()
    length[:3] = 0
    inputs = batch["candidate"], batch["history"][:, :2], length
    with torch.no_grad():
        net.sink_logit.fill_(1.3)
    _, pooled, weights = net.attend(*inputs)
    _, plain_pooled, plain_weights = plain.attend(*inputs)
    with torch.no_grad():
        scores = raw.attend(*inputs)[2]  # raw scores, 0 at padding
        real = torch.arange(scores.shape[1])[None, :] < length[:, None]
        logits = scores.masked_fill(~real, float("-inf"))
        support = torch.sigmoid(torch.logsumexp(logits, dim=1) - 1.3)
    torch.testing.assert_close(weights, plain_weights * support[:, None])
    torch.testing.assert_close(pooled, plain_pooled * support[:, None])
    assert torch.all(weights[:3] == 0) and torch.all(weights.sum(dim=1) < 1)
    pooled.sum().backward()
    assert torch.isfinite(net.sink_logit.grad) and net.sink_logit.grad != 0
    assert DeepInterestNetwork([30, 7], pooling="mean", attention_sink=True).sink_logit is None
    with pytest.raises(ValueError, match="attention_sink"):
        DeepInterestNetwork([30, 7], attention_sink=True)  # raw scores have no softmax
    with pytest.raises(ValueError, match="normalization 'mean'"):  # a scorer's own one counts
        DeepInterestNetwork([30, 7], attention_normalization="softmax",
                            attention_scorer=MeanPooling, attention_sink=True)


@pytest.mark.parametrize("settings, has_sink", [
    ({"attention_normalization": "softmax"}, True),
    ({"attention_normalization": None}, False),  # raw scores: "auto" adds none, no error
    ({"attention_normalization": "mean"}, False),
    ({"attention_normalization": "softmax", "attention_scorer": MeanPooling}, False),
    ({"attention_normalization": "softmax", "pooling": "sum"}, False),
])
def test_an_automatic_sink_is_there_exactly_where_the_scores_get_softmax(settings, has_sink):
    net = DeepInterestNetwork([30, 7], attention_sink="auto", **settings)
    assert (net.sink_logit is not None) is has_sink
    assert ("sink_logit" in net.state_dict()) is has_sink


def test_attention_sink_refuses_what_is_neither_a_bool_nor_auto():
    with pytest.raises(ValueError, match="attention_sink must be True, False or 'auto'"):
        DeepInterestNetwork([30, 7], attention_normalization="softmax", attention_sink="on")


def test_length_scale_buckets_and_what_it_does_to_the_weights():
    net = DeepInterestNetwork([30, 7], embed_dim=4, attention_units=(6,), hidden_units=(4,),
                              attention_normalization="softmax", attention_length_scale=True)
    assert DeepInterestNetwork([30, 7]).length_log_scale is None  # off unless asked for
    assert DeepInterestNetwork([30, 7], pooling="mean",
                               attention_length_scale=True).length_log_scale is None
    lengths = torch.tensor([0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 50])
    with torch.no_grad():
        net.length_log_scale.copy_(torch.arange(6.0))
        np.testing.assert_allclose(net.length_scales(lengths).log().numpy(),
                                   [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5], atol=1e-6)
        # A scale near 0 gives mean pooling's weights; a large one puts all the weight on
        # the best-scored positions (several, where a behaviour repeats).
        batch = _random_batch(n_rows=20, max_len=6)
        inputs = batch["candidate"], batch["history"][:, :2], batch["history_length"]
        real = batch["history_length"] > 0
        length = batch["history_length"][real]
        net.length_log_scale.zero_()
        net.attention_normalization = None
        raw = net.attend(*inputs)[2][real]
        net.attention_normalization = "softmax"
        valid = torch.arange(raw.shape[1])[None, :] < length[:, None]
        best = valid & (raw == raw.masked_fill(~valid, -torch.inf).max(dim=1).values[:, None])
        net.length_log_scale.fill_(-30.0)
        torch.testing.assert_close(net.attend(*inputs)[2][real], valid / length[:, None],
                                   rtol=0, atol=1e-5)
        net.length_log_scale.fill_(30.0)
        sharp = net.attend(*inputs)[2][real]
        torch.testing.assert_close((sharp * best).sum(dim=1), torch.ones(len(length)),
                                   rtol=0, atol=1e-4)


def test_attention_embedding_gradient_scales_only_the_scorers_share_of_the_gradient():
    """The forward pass is the same to the bit; the embeddings' gradient is the MLP
    path's plus the given share of the scorer's (linear in it); the scorer's own weights
    get their whole gradient."""
    batch = _random_batch()

    def grads(share):
        net = _random_network("dice", "softmax", "attention").train()
        net.attention_embedding_gradient = share
        logits = net(**batch)
        (logits ** 2).sum().backward()
        return (logits.detach(), net.history_embeddings[0].weight.grad.clone(),
                net.attention.first.weight.grad.clone())

    (out_1, emb_1, scorer_1), (out_0, emb_0, scorer_0), (out_h, emb_h, scorer_h) = (
        grads(1.0), grads(0.0), grads(0.3))
    torch.testing.assert_close(out_0, out_1, rtol=0, atol=0)
    torch.testing.assert_close(out_h, out_1, rtol=0, atol=0)
    torch.testing.assert_close(scorer_0, scorer_1)
    torch.testing.assert_close(scorer_h, scorer_1)
    assert (emb_1 - emb_0).abs().max() > 1e-3  # the scorer's share is not negligible
    torch.testing.assert_close(emb_h, emb_0 + 0.3 * (emb_1 - emb_0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="attention_embedding_gradient"):
        DeepInterestNetwork([30, 7], attention_embedding_gradient=1.5)


def test_drop_behaviours_keeps_a_subsequence_of_each_rows_real_positions():
    batch = _random_batch(n_rows=400, max_len=9)
    history, length = batch["history"], batch["history_length"]
    torch.manual_seed(0)
    thinned, kept = drop_behaviours(history, length, 0.4)
    assert thinned.shape == history.shape and kept.dtype == length.dtype
    assert (kept <= length).all()
    for row in range(len(length)):
        real = history[row, :, : length[row]].T.tolist()  # (position, features)
        left = iter(real)  # the kept positions, each with all its features, in order
        assert all(p in left for p in thinned[row, :, : kept[row]].T.tolist())
    # About 60% of the real positions survive (3,600 draws: 4 standard deviations).
    assert abs(kept.sum() / length.sum() - 0.6) < 4 * (0.24 / length.sum()) ** 0.5
    torch.testing.assert_close(drop_behaviours(history, length, 0.0),
                               (history, length), rtol=0, atol=0)


def test_behaviour_dropout_thins_training_histories_only():
    """In eval mode the network reads whole histories; in training it reads the thinned
    ones drop_behaviours draws, for attention and pooling alike."""
    batch = _random_batch()
    for pooling in ("attention", "mean"):
        net = _random_network("prelu", "softmax", pooling)
        net.behaviour_dropout = 0.5
        plain = _random_network("prelu", "softmax", pooling)
        with torch.no_grad():
            torch.testing.assert_close(net(**batch), plain(**batch), rtol=0, atol=0)
            net.train(), plain.train()
            torch.manual_seed(3)
            dropped = net(**batch)
            torch.manual_seed(3)
            history, length = drop_behaviours(batch["history"], batch["history_length"], 0.5)
            expected = plain(**{**batch, "history": history, "history_length": length})
        torch.testing.assert_close(dropped, expected, rtol=0, atol=0)
        assert (dropped - plain(**batch)).abs().max() > 1e-3
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match="behaviour_dropout"):
            DeepInterestNetwork([30, 7], behaviour_dropout=rate)


def test_shared_history_scores_equal_the_attention_unit():
    net = _random_network("prelu", None, "attention")
    query, keys = torch.randn(6, 8), torch.randn(4, 12)  # keys: item features, then context
    rows = torch.arange(6).repeat_interleave(4)
    with torch.no_grad():
        per_pair = net.attention(query, keys.repeat(6, 1), rows).view(6, 4)
        shared = net.attention.score_shared(query, keys)
        net.attention.block_pairs = 8  # 2 candidates a block
        in_blocks = net.attention.score_shared(query, keys)
        net.attention.block_pairs = None  # one block, as export_onnx's request graph runs
        one_block = net.attention.score_shared(query, keys)
    torch.testing.assert_close(shared, per_pair, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_blocks, per_pair, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_block, per_pair, rtol=1e-5, atol=1e-5)


def test_dice_inference_follows_changes_of_its_statistics_and_alpha():
    """Dice keeps its inference constants between calls: a step, a load or a move must
    invalidate them."""
    from sklearn_din import Dice

    dice = Dice(5).eval()
    x = torch.randn(7, 5)

    def reference(module, x=x):
        normalised = (x - module.running_mean) / torch.sqrt(module.running_var + module.eps)
        p = torch.sigmoid(normalised)
        return p * x + (1 - p) * module.alpha * x

    with torch.no_grad():
        torch.testing.assert_close(dice(x), reference(dice))
        dice.alpha.add_(0.7)  # an optimizer step changes alpha in place
        dice.running_mean.add_(0.3)
        torch.testing.assert_close(dice(x), reference(dice))
        other = Dice(5)
        other.running_var.fill_(4.0)
        dice.load_state_dict(other.state_dict())
        torch.testing.assert_close(dice(x), reference(dice))
        dice.double()  # new tensors: the float32 constants must not be reused
        torch.testing.assert_close(dice(x.double()), reference(dice, x.double()))


# ------------------------------------------------------------------ fused Dice
# Dice's training path is one autograd node with a hand-written backward, run in blocks of
# rows (_DiceFunction); held to the composition it replaces (batch_norm + sigmoid + addcmul).
torch.set_num_threads(1)


def reference_dice(dice: Dice, x: torch.Tensor) -> torch.Tensor:
    """Dice as the paper writes it, composed of torch's differentiable ops."""
    batch_stats = dice.training and x.shape[0] > 1
    normalised = nn.functional.batch_norm(
        x, dice.running_mean, dice.running_var, None, None, batch_stats, dice.momentum, dice.eps
    )
    p = torch.sigmoid(normalised)
    return p * x + (1 - p) * dice.alpha * x


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2 rows of 3 features: every test input spans several blocks."""
    monkeypatch.setattr(_DiceFunction, "BLOCK_ELEMENTS", 6)


@pytest.mark.parametrize("batch_stats", [True, False])
@pytest.mark.parametrize("n_rows", [7, 2])
def test_fused_dice_passes_gradcheck_in_double(small_blocks, batch_stats, n_rows):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(n_rows, 3, generator=generator, dtype=torch.double) * 2 + 0.5)
    alpha = torch.randn(3, generator=generator, dtype=torch.double)
    mean = torch.randn(3, generator=generator, dtype=torch.double)
    var = torch.rand(3, generator=generator, dtype=torch.double) + 0.5

    def dice(x, alpha):
        return _DiceFunction.apply(x, alpha, mean.clone(), var.clone(), batch_stats, 0.1, 1e-8)

    assert torch.autograd.gradcheck(dice, (x.requires_grad_(), alpha.requires_grad_()))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("n_rows", [1000, 1])
def test_dice_module_matches_the_composed_reference(small_blocks, mode, n_rows):
    # Same output, same gradients of input and alpha, same running statistics after the
    # step, in training (batch statistics; one row: running statistics) and in eval mode
    # with autograd on.
    torch.manual_seed(0)
    fast, slow = Dice(3), Dice(3)
    with torch.no_grad():
        for dice in (fast, slow):
            dice.alpha.copy_(torch.tensor([-0.5, 0.0, 0.7]))
            dice.running_mean.copy_(torch.tensor([0.2, -1.0, 3.0]))
            dice.running_var.copy_(torch.tensor([0.5, 2.0, 4.0]))
    getattr(fast, mode)(), getattr(slow, mode)()
    x = torch.randn(n_rows, 3) * torch.tensor([1.0, 3.0, 0.1]) + torch.tensor([0.0, 2.0, -1.0])
    x_fast, x_slow = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fast, out_slow = fast(x_fast), reference_dice(slow, x_slow)
    upstream = torch.randn_like(out_fast)
    out_fast.backward(upstream)
    out_slow.backward(upstream)
    torch.testing.assert_close(out_fast, out_slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_fast.grad, x_slow.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.alpha.grad, slow.alpha.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.running_mean, slow.running_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fast.running_var, slow.running_var, rtol=1e-6, atol=1e-7)
    if mode == "train" and n_rows > 1:  # the step did move the statistics
        assert not torch.allclose(fast.running_mean, torch.tensor([0.2, -1.0, 3.0]))


def test_fused_dice_leaves_its_input_alone_and_backs_up_a_retained_graph_twice():
    dice = Dice(4).train()
    x = torch.randn(50, 4, requires_grad=True)
    before = x.detach().clone()
    out = dice(x)
    out.sum().backward(retain_graph=True)
    assert torch.equal(x.detach(), before)
    first = x.grad.clone()
    out.sum().backward()  # retained graph: the same gradient again
    torch.testing.assert_close(x.grad, 2 * first)


def _fused_network(activation: str = "dice") -> DeepInterestNetwork:
    return DeepInterestNetwork(
        [50, 7], [9], 2, embed_dim=4, attention_units=(16, 8), hidden_units=(12, 6),
        activation=activation, attention_normalization="softmax", pooled_product=True,
    )


def _fused_batch(n_rows: int = 64, max_len: int = 12, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (n_rows,), generator=generator)
    history = torch.stack([torch.randint(2, 50, (n_rows, max_len), generator=generator),
                           torch.randint(2, 7, (n_rows, max_len), generator=generator)], 1)
    history = history * (torch.arange(max_len) < lengths[:, None])[:, None, :]
    return {
        "candidate": torch.stack([torch.randint(2, 50, (n_rows,), generator=generator),
                                  torch.randint(2, 7, (n_rows,), generator=generator)], 1),
        "history": history, "history_length": lengths,
        "sparse": torch.randint(2, 9, (n_rows, 1), generator=generator),
        "dense": torch.randn(n_rows, 2, generator=generator),
    }


def test_training_with_fused_dice_gives_the_model_of_the_composed_dice(monkeypatch):
    # Same seed, same batches, a few Adam steps: the same model within float tolerance.
    def train(composed: bool) -> DeepInterestNetwork:
        with monkeypatch.context() as patch:
            if composed:
                patch.setattr(Dice, "forward", reference_dice)
            torch.manual_seed(3)
            net = _fused_network()
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
            for step in range(5):
                batch = _fused_batch(seed=step)
                target = (batch["candidate"][:, 0] % 2).float()
                optimizer.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(net(**batch), target)
                (loss + 0.5 * net.embedding_penalty(**batch)).backward()
                optimizer.step()
        return net

    fast, slow = train(composed=False), train(composed=True)
    # Adam's normalised steps carry float rounding into the weights (1.8e-5 with torch's
    # ops, 4e-5 with the compiled kernel's own exponential); a wrong gradient moves
    # them by 1e-2.
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)
    batch = _fused_batch(seed=99)
    fast.eval(), slow.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**batch), slow(**batch), rtol=1e-4, atol=1e-5)


def test_fused_dice_handles_no_rows():
    # A batch whose rows all have empty histories scores no position at all.
    dice = Dice(3).train()
    x = torch.zeros(0, 3, requires_grad=True)
    dice(x).sum().backward()
    assert x.grad.shape == (0, 3) and torch.equal(dice.alpha.grad, torch.zeros(3))


@pytest.mark.parametrize("sparse", [False, True])
def test_lookup_gives_embeddings_rows_and_gradients_padding_row_included(sparse):
    # _lookup trades nn.Embedding's sorting backward for index_select's index_add: the
    # same rows, the same gradients bit for bit, and none for the padding row 0.
    from sklearn_din._network import _lookup

    generator = torch.Generator().manual_seed(0)
    table = torch.nn.Embedding(50, 4, padding_idx=0, sparse=sparse)
    torch.nn.init.normal_(table.weight, generator=generator)
    with torch.no_grad():
        table.weight[0].zero_()
    ids = torch.randint(0, 50, (300, 3), generator=generator)
    ids[::7, 1] = 0  # padding ids among duplicates
    upstream = torch.randn(300, 3, 4, generator=generator)

    rows = _lookup(table, ids)
    rows.backward(upstream)
    ours = table.weight.grad.to_dense().clone()
    table.weight.grad = None
    reference = table(ids)
    reference.backward(upstream)
    assert torch.equal(rows, reference)
    assert torch.equal(ours, table.weight.grad.to_dense())
    assert not ours[0].any()
    with torch.no_grad():  # inference: the rows alone
        assert torch.equal(_lookup(table, ids), table(ids))
