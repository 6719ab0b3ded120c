"""The network's fast paths compute the same function as the plain composition of torch ops.

Dice's training path is one autograd node with a hand-written backward, run in blocks of
rows (``_DiceFunction``); these tests hold it to the composition it replaces
(``batch_norm`` + ``sigmoid`` + ``addcmul``), in value, gradient and running statistics.
"""

import pytest
import torch
from torch import nn

from sklearn_din import DeepInterestNetwork, Dice
from sklearn_din._network import _DiceFunction

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


def _network(activation: str = "dice") -> DeepInterestNetwork:
    return DeepInterestNetwork(
        [50, 7], [9], 2, embed_dim=4, attention_units=(16, 8), hidden_units=(12, 6),
        activation=activation, attention_normalization="softmax", pooled_product=True,
    )


def _batch(n_rows: int = 64, max_len: int = 12, seed: int = 0) -> dict:
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
            net = _network()
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
            for step in range(5):
                batch = _batch(seed=step)
                target = (batch["candidate"][:, 0] % 2).float()
                optimizer.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(net(**batch), target)
                (loss + 0.5 * net.embedding_penalty(**batch)).backward()
                optimizer.step()
        return net

    fast, slow = train(composed=False), train(composed=True)
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    batch = _batch(seed=99)
    fast.eval(), slow.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**batch), slow(**batch), rtol=1e-4, atol=1e-5)


def test_fused_dice_handles_no_rows():
    # A batch whose rows all have empty histories scores no position at all.
    dice = Dice(3).train()
    x = torch.zeros(0, 3, requires_grad=True)
    dice(x).sum().backward()
    assert x.grad.shape == (0, 3) and torch.equal(dice.alpha.grad, torch.zeros(3))
