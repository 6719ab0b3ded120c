"""The inference MLP as one compiled pass: held to the modules' own function in float64,
for every capability this machine can run, and taken only where it computes that function."""

import copy
import pickle

import pytest
import torch
from torch import nn

from sklearn_din import DeepInterestNetwork, Dice, _fused_mlp, _kernels
from sklearn_din._fused_mlp import FusedMLP, mlp_scores
from sklearn_din._network import LocalActivationUnit


def _capabilities() -> list[str]:
    order = ["DEFAULT", "AVX2", "AVX512"]
    best = _kernels.capability()
    return order[: order.index(best) + 1] if best in order else ["DEFAULT"]


def _unit(units, activation, seed=0):
    """An attention unit with statistics and slopes away from their initial values."""
    torch.manual_seed(seed)
    unit = LocalActivationUnit(16, units, activation)
    with torch.no_grad():
        for module in unit.modules():
            if isinstance(module, Dice):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.alpha.uniform_(-0.5, 0.5)
            elif isinstance(module, nn.PReLU):
                module.weight.uniform_(-0.5, 0.5)
    return unit.eval()


def _reference(unit, x):
    """The unit's MLP on x in float64 (Dice through its own float64 forward)."""
    unit64 = copy.deepcopy(unit).double()
    with torch.no_grad():
        hidden = unit64.first_activation(x.double())
        return unit64.score(unit64.rest(hidden)).squeeze(1)


@pytest.fixture(scope="module", params=_capabilities())
def ops(request):
    return _kernels.load(request.param)


@pytest.mark.parametrize("activation", ["dice", "prelu", "relu"])
# One layer (only the score after the first activation), the paper's, widths that are not
# multiples of a vector, a deeper stack.
@pytest.mark.parametrize("units", [(36,), (80, 40), (33, 17, 5), (256, 128)])
@pytest.mark.parametrize("rows", [0, 1, 7, 9, 300])
def test_kernel_matches_the_modules_in_float64(ops, activation, units, rows):
    unit = _unit(units, activation)
    x = torch.randn(rows, units[0]) * 2
    fused = FusedMLP(unit.first_activation, unit.rest, unit.score)
    assert fused.supported
    got = ops.mlp_scores(x, *fused.pack(x.shape[1]))
    assert got.shape == (rows,)
    torch.testing.assert_close(got.double(), _reference(unit, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden_units", [(), (7,), (200, 80)])
def test_the_output_mlp_is_fused_with_dropout_and_without_a_lead_activation(hidden_units):
    torch.manual_seed(0)
    net = DeepInterestNetwork([50, 10], hidden_units=hidden_units, dropout=0.3).eval()
    x = torch.randn(64, net.output.in_features if not hidden_units else net.mlp[0].in_features)
    fused = FusedMLP(None, net.mlp, net.output)
    assert fused.supported
    with torch.no_grad():
        got = fused(x)
        expected = net.output(net.mlp(x)).squeeze(1)
    assert got is not None
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_in_the_output_mlp_is_left_to_torch():
    net = DeepInterestNetwork([50, 10], batch_norm=True).eval()
    x = torch.randn(8, net.mlp[0].in_features)
    assert not FusedMLP(None, net.mlp, net.output).supported
    with torch.no_grad():
        torch.testing.assert_close(mlp_scores(net, None, net.mlp, net.output, x),
                                   net.output(net.mlp(x)).squeeze(1))


def test_the_kernel_runs_only_at_inference_on_float32_cpu(monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "compiled")
    unit = _unit((80, 40), "dice")
    fused = FusedMLP(unit.first_activation, unit.rest, unit.score)
    x = torch.randn(20, 80)
    with torch.no_grad():
        assert fused(x) is not None
        assert fused(x.double()) is None
        unit.train()
        assert fused(x) is None  # training mode: Dice normalises by the batch
        unit.eval()
    assert fused(x) is None  # autograd: the modules, whose backward exists
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "torch")
    with torch.no_grad():
        assert fused(x) is None


def test_new_weights_and_statistics_are_packed_again():
    unit = _unit((80, 40), "dice")
    x = torch.randn(50, 80)
    with torch.no_grad():
        before = mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x)
    optimizer = torch.optim.SGD(unit.parameters(), lr=0.5)
    unit.train()
    loss = unit.score(unit.rest(unit.first_activation(x))).sum()  # updates Dice's statistics
    loss.backward()
    optimizer.step()
    unit.eval()
    with torch.no_grad():
        after = mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x)
        torch.testing.assert_close(after.double(), _reference(unit, x), rtol=1e-5, atol=1e-5)
        assert (after - before).abs().max() > 1e-3
        unit.load_state_dict(_unit((80, 40), "dice", seed=1).state_dict())
        loaded = mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x)
        torch.testing.assert_close(loaded.double(), _reference(unit, x), rtol=1e-5, atol=1e-5)


def test_scores_do_not_depend_on_the_number_of_threads():
    unit = _unit((80, 40), "dice")
    x = torch.randn(1000, 80)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                results.append(mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*results)


def test_pickles_and_copies_carry_no_packed_weights():
    unit = _unit((80, 40), "dice")
    x = torch.randn(10, 80)
    with torch.no_grad():
        expected = mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x)
    assert len(pickle.dumps(unit)) == len(pickle.dumps(_unit((80, 40), "dice")))
    for other in (copy.deepcopy(unit), pickle.loads(pickle.dumps(unit))):
        with torch.no_grad():
            got = mlp_scores(other, other.first_activation, other.rest, other.score, x)
        assert torch.equal(got, expected)


def test_the_kernel_refuses_arguments_it_cannot_use():
    ops = _kernels.load()
    unit = _unit((80, 40), "dice")
    packed = FusedMLP(unit.first_activation, unit.rest, unit.score).pack(80)
    with pytest.raises(RuntimeError, match="contiguous float32 CPU tensors; x is not"):
        ops.mlp_scores(torch.randn(4, 80).double(), *packed)
    with pytest.raises(RuntimeError, match=r"lead_params must be \(4, 96\)"):
        ops.mlp_scores(torch.randn(4, 81), *packed)  # packed for 80 inputs
    relu = _unit((80, 40), "relu")
    packed = FusedMLP(relu.first_activation, relu.rest, relu.score).pack(80)
    with pytest.raises(RuntimeError, match="layer 0's packed weight"):
        ops.mlp_scores(torch.randn(4, 81), *packed)


@pytest.mark.parametrize("activation", ["dice", "prelu"])
@pytest.mark.parametrize(("candidates", "positions"), [(1, 1), (9, 3), (200, 50)])
@pytest.mark.parametrize("context_dim", [0, 8])
def test_shared_history_scores_match_the_per_pair_forward_in_float64(
        monkeypatch, activation, candidates, positions, context_dim):
    from sklearn_din import _network

    computed = []  # what the kernel returned: a tensor each time it ran

    def recorded(*args):
        computed.append(_fused_mlp.shared_mlp_scores(*args))
        return computed[-1]

    monkeypatch.setattr(_network, "shared_mlp_scores", recorded)
    torch.manual_seed(0)
    unit = _unit_with_context((80, 40), activation, context_dim)
    query = torch.randn(candidates, 16)
    keys = torch.randn(positions, 16 + context_dim)
    rows = torch.arange(candidates).repeat_interleave(positions)
    with torch.no_grad():
        got = unit.score_shared(query, keys)
        unit64 = copy.deepcopy(unit).double().train(False)
        expected = unit64(query.double(), keys.double().repeat(candidates, 1), rows)
    assert got.shape == (candidates, positions)
    assert len(computed) == 1 and computed[0] is not None  # the kernel ran
    torch.testing.assert_close(got.double(), expected.view(candidates, positions),
                               rtol=1e-5, atol=1e-5)


def test_a_subclass_of_an_activation_is_left_to_its_own_forward():
    class ShiftedDice(Dice):
        def forward(self, x):
            return super().forward(x) + 1.0

    unit = _unit((80, 40), "dice")
    x = torch.randn(10, 80)
    with torch.no_grad():  # packed first, then a module replaced: packed again
        mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x)
    unit.rest[1] = ShiftedDice(40).eval()
    assert not FusedMLP(unit.first_activation, unit.rest, unit.score).supported
    with torch.no_grad():
        torch.testing.assert_close(
            mlp_scores(unit, unit.first_activation, unit.rest, unit.score, x),
            unit.score(unit.rest(unit.first_activation(x))).squeeze(1))


def _unit_with_context(units, activation, context_dim):
    unit = _unit(units, activation)
    if context_dim:  # a unit whose keys carry context features (the recency embedding)
        state = {k: v for k, v in unit.state_dict().items() if not k.startswith("first.")}
        unit = LocalActivationUnit(16, units, activation, context_dim=context_dim)
        unit.load_state_dict(state, strict=False)
    return unit.eval()


@pytest.mark.parametrize("activation", ["dice", "prelu", "relu"])
@pytest.mark.parametrize("units", [(36,), (80, 40), (33, 17, 5)])
@pytest.mark.parametrize("pairs", [0, 1, 9, 500])
@pytest.mark.parametrize("context_dim", [0, 8])
def test_per_pair_scores_match_the_modules_in_float64(monkeypatch, activation, units, pairs,
                                                       context_dim):
    from sklearn_din import _network

    computed = []

    def recorded(*args):
        computed.append(_fused_mlp.pair_mlp_scores(*args))
        return computed[-1]

    monkeypatch.setattr(_network, "pair_mlp_scores", recorded)
    unit = _unit_with_context(units, activation, context_dim)
    query = torch.randn(30, 16)
    keys = torch.randn(pairs, 16 + context_dim)
    rows = torch.randint(0, 30, (pairs,))
    with torch.no_grad():
        got = unit(query, keys, rows)
        expected = copy.deepcopy(unit).double()(query.double(), keys.double(), rows)
    assert len(computed) == 2 and computed[0] is not None  # the kernel ran (not in float64)
    assert got.shape == (pairs,)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_the_per_pair_kernel_checks_its_row_indices():
    unit = _unit((80, 40), "dice")
    with torch.no_grad(), pytest.raises(RuntimeError, match="row index 30 is outside the 30"):
        unit(torch.randn(30, 16), torch.randn(3, 16), torch.tensor([0, 30, 1]))
