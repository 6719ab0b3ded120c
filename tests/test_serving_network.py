"""The network's serving paths compute the function of its training/predict forward."""

import itertools

import pytest
import torch

from sklearn_din import DeepInterestNetwork

CONFIGS = [*itertools.product(("dice", "prelu"), (None, "softmax", "mean"), ("attention",)),
           *itertools.product(("dice", "prelu"), (None,), ("sum", "mean"))]
CONTEXT_SIZE = 6  # a context feature of the behaviours (the recency bucket), table size


def _network(activation, normalization, pooling, *, batch_norm=False, seed=0):
    torch.manual_seed(seed)
    net = DeepInterestNetwork([30, 7], [11, 5], 3, context_vocab_sizes=[CONTEXT_SIZE],
                              embed_dim=4, attention_units=(12, 6),
                              hidden_units=(16, 8), activation=activation,
                              attention_normalization=normalization, pooling=pooling,
                              batch_norm=batch_norm)
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


def _batch(n_rows=40, max_len=9, seed=1):
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
    net = _network(activation, normalization, pooling, batch_norm=pooling == "sum")
    batch = _batch()
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
    net = _network("dice", "softmax", "attention").requires_grad_(False)
    batch = _batch()
    with torch.no_grad():
        expected = net(**batch)
    torch.testing.assert_close(net.forward_masked(**batch), expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize(("activation", "normalization", "pooling"), CONFIGS)
def test_shared_history_forward_equals_forward_on_repeated_rows(activation, normalization,
                                                                 pooling):
    net = _network(activation, normalization, pooling)
    batch = _batch()
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


def test_shared_history_scores_equal_the_attention_unit():
    net = _network("prelu", None, "attention")
    query, keys = torch.randn(6, 8), torch.randn(4, 12)  # keys: item features, then context
    rows = torch.arange(6).repeat_interleave(4)
    with torch.no_grad():
        per_pair = net.attention(query, keys.repeat(6, 1), rows).view(6, 4)
        shared = net.attention.score_shared(query, keys)
        in_blocks = net.attention.score_shared(query, keys, block_pairs=8)  # 2 candidates each
    torch.testing.assert_close(shared, per_pair, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_blocks, per_pair, rtol=1e-5, atol=1e-5)


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
