"""The compiled Dice kernels: held to Dice's formulas in float64, for every capability
this machine can run, and the choice between them and torch's ops."""

import warnings

import pytest
import torch

from sklearn_din import Dice, _kernels


def _capabilities() -> list[str]:
    # Every capability up to the one torch dispatches to: each is a build of its own.
    order = ["DEFAULT", "AVX2", "AVX512"]
    best = _kernels.capability()
    return order[: order.index(best) + 1] if best in order else ["DEFAULT"]


def _reference(x, dout, mean, var, alpha, batch_stats, eps=1e-8):
    """Dice's output and gradients by autograd in float64, from the paper's formula."""
    x64 = x.double().requires_grad_()
    alpha64 = alpha.double().requires_grad_()
    if batch_stats:
        mean, var = x64.mean(0), x64.var(0, unbiased=False)
    gate = torch.sigmoid((x64 - mean.double()) / torch.sqrt(var.double() + eps))
    out = gate * x64 + (1 - gate) * alpha64 * x64
    out.backward(dout.double())
    return out.detach(), gate.detach(), x64.grad, alpha64.grad


@pytest.fixture(scope="module", params=_capabilities())
def ops(request):
    return _kernels.load(request.param)


@pytest.mark.parametrize("batch_stats", [False, True])
@pytest.mark.parametrize(("rows", "width"), [(1, 3), (65, 40), (300, 80), (130, 200), (0, 5)])
def test_kernels_match_dices_formula_in_double(ops, rows, width, batch_stats):
    # Widths off the vector size (tails), rows across chunks of 64, no rows at all.
    generator = torch.Generator().manual_seed(rows + width)
    x = torch.randn(rows, width, generator=generator) * 3 + 0.5
    dout = torch.randn(rows, width, generator=generator)
    alpha = torch.randn(width, generator=generator) * 0.5
    mean = torch.randn(width, generator=generator)
    var = torch.rand(width, generator=generator) + 0.2
    if batch_stats and rows > 1:
        mean, var = x.mean(0), x.var(0, unbiased=False)
    rstd = torch.rsqrt(var + 1e-8)
    out, gate = ops.dice_forward(x, -mean * rstd, rstd, alpha, 1 - alpha, True)
    grad_x, grad_alpha = ops.dice_backward(dout, x, gate, alpha, 1 - alpha, rstd, -mean * rstd,
                                           batch_stats and rows > 1)
    ref_out, ref_gate, ref_grad_x, ref_grad_alpha = _reference(
        x, dout, mean, var, alpha, batch_stats and rows > 1)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gate.double(), ref_gate, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_x.double(), ref_grad_x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_alpha.double(), ref_grad_alpha, rtol=1e-4, atol=1e-4)
    # Inference and training ask for no gate; the backward then recomputes the same one.
    alone, no_gate = ops.dice_forward(x, -mean * rstd, rstd, alpha, 1 - alpha, False)
    assert torch.equal(alone, out) and no_gate.numel() == 0
    recomputed = ops.dice_backward(dout, x, no_gate, alpha, 1 - alpha, rstd, -mean * rstd,
                                   batch_stats and rows > 1)
    assert torch.equal(recomputed[0], grad_x) and torch.equal(recomputed[1], grad_alpha)


def test_the_gate_is_sigmoid_to_1e7_over_its_whole_range(ops):
    # The kernels' own exponential (_vec_math.h): every exponent from deep saturation to
    # the clamp at 100 / log2(e) and past it, and infinities, which must give 0 and 1, not
    # NaN (1 + 2^t overflowing would make the reciprocal's refinement inf * 0).
    x = torch.cat([torch.linspace(-120, 120, 240_001), torch.tensor([-1e30, 1e30]),
                   torch.tensor([float("-inf"), float("inf")])])[:, None].contiguous()
    one, zero = torch.ones(1), torch.zeros(1)
    out, gate = ops.dice_forward(x, zero, one, zero, one, True)
    reference = torch.sigmoid(x.double())
    assert (gate.double() - reference).abs().max() < 2e-7
    assert gate[-2].item() < 1e-30 and gate[-1].item() > 1 - 1e-7
    assert torch.isfinite(gate).all() and torch.equal(out[:-2], x[:-2] * gate[:-2])


def test_backward_does_not_depend_on_the_number_of_threads():
    # Column sums are added per fixed chunk of rows, in order: bit-identical gradients.
    ops = _kernels.load()
    generator = torch.Generator().manual_seed(0)
    x, dout = torch.randn(2, 1000, 48, generator=generator)
    alpha, shift, rstd = torch.rand(3, 48, generator=generator)
    _, gate = ops.dice_forward(x, shift, rstd, alpha, 1 - alpha, True)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(ops.dice_backward(dout, x, gate, alpha, 1 - alpha, rstd, shift, True))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_kernels_refuse_what_they_cannot_compute():
    ops = _kernels.load()
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        ops.dice_forward(x.double(), *torch.zeros(4, 3), False)
    with pytest.raises(RuntimeError, match="one float32 value per channel"):
        ops.dice_forward(x, torch.zeros(2), *torch.zeros(3, 3), False)


def _dice_and_input(training: bool):
    torch.manual_seed(0)
    dice = Dice(40).train(training)
    with torch.no_grad():
        dice.alpha.uniform_(-0.5, 0.5)
        dice.running_mean.uniform_(-1, 1)
    return dice, torch.randn(500, 40) * 2


@pytest.mark.parametrize("training", [True, False])
def test_dice_gives_the_same_function_on_either_path(monkeypatch, training):
    results = {}
    for choice in ("compiled", "torch"):
        monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, choice)
        dice, x = _dice_and_input(training)
        x.requires_grad_()
        out = dice(x)
        out.backward(torch.ones_like(out))
        with torch.no_grad():
            inferred = dice.eval()(x)
        results[choice] = (out, x.grad, dice.alpha.grad, dice.running_mean, inferred)
    for a, b in zip(*results.values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dice_uses_the_kernels_only_for_plain_float32_cpu_tensors(monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "compiled")
    alpha = torch.zeros(3)
    assert _kernels.dice_ops(torch.zeros(2, 3), alpha) is not None
    assert _kernels.dice_ops(torch.zeros(2, 3, dtype=torch.double), alpha) is None
    assert _kernels.dice_ops(torch.zeros(2, 3), alpha.double()) is None
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _kernels.dice_ops(torch.zeros(2, 3), alpha) is None
    monkeypatch.undo()
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "torch")
    assert _kernels.dice_ops(torch.zeros(2, 3), alpha) is None


def test_a_wrong_choice_names_the_variable(monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(ValueError, match="SKLEARN_DIN_KERNELS must be one of"):
        Dice(3).eval()(torch.zeros(2, 3))


@pytest.fixture
def failing_build(monkeypatch):
    """A machine without a compiler: every build fails with the compiler's message."""
    monkeypatch.setattr(_kernels, "_loaded", {})
    monkeypatch.setattr(_kernels, "_warned", type(_kernels._warned)())

    def no_compiler(*args, **kwargs):
        raise OSError("c++: command not found")

    from torch.utils import cpp_extension
    monkeypatch.setattr(cpp_extension, "load", no_compiler)


def test_without_a_compiler_auto_warns_once_and_falls_back(failing_build, monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "auto")
    dice, x = _dice_and_input(training=True)
    with pytest.warns(RuntimeWarning, match="c\\+\\+: command not found.*torch's ops"):
        out = dice(x.requires_grad_())
    out.sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dice.eval()(x.detach())  # no second warning
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "torch")  # the function of that path
    torch.testing.assert_close(out, _dice_and_input(training=True)[0](x.detach()))


def test_without_a_compiler_compiled_says_why(failing_build, monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "compiled")
    with pytest.raises(RuntimeError, match="did not build for .*command not found"):
        Dice(3).eval()(torch.zeros(2, 3))


@pytest.mark.parametrize(("activation", "device", "prepared"),
                         [("dice", "cpu", True), ("dice", None, True), ("prelu", "cpu", False)])
def test_a_classifier_loads_the_kernels_when_it_builds_a_dice_network_for_the_cpu(
        small_frame, monkeypatch, activation, device, prepared):
    # Loading (or building) them inside the first epoch would count in its time.
    from sklearn_din import DINClassifier

    calls = []
    monkeypatch.setattr(_kernels, "prepare", lambda: calls.append(True))
    X, y = small_frame
    DINClassifier(activation=activation, device=device, max_epochs=1, verbose=0,
                  random_state=0).fit(X, y)
    assert bool(calls) is prepared


# ------------------------------------------------------------------ the block cache
MIB = 1 << 20


def _cache_stats():
    """(depth, cached bytes, live large blocks, hits, misses) of the chosen build's cache."""
    return tuple(_kernels.load().block_cache_stats())


def test_block_cache_reuses_freed_large_blocks_and_leaves_no_trace():
    before = _cache_stats()
    with _kernels.block_cache():
        assert _cache_stats()[0] == before[0] + 1
        first = torch.ones(10 * MIB // 4)  # 10 MiB
        where = first.data_ptr()
        del first
        assert _cache_stats()[1] >= 10 * MIB  # kept, not unmapped
        again = torch.full((10 * MIB // 4,), 2.0)  # the same size class: the same block
        assert again.data_ptr() == where and bool((again == 2.0).all())
        a_bit_larger = torch.zeros(10 * MIB // 4 + 1000)  # no block free: a fresh one
        assert a_bit_larger.data_ptr() != where and float(a_bit_larger.sum()) == 0.0
        small, empty = torch.arange(10.0), torch.empty(0)  # below 8 MiB, and nothing
        assert float(small.sum()) == 45.0 and empty.numel() == 0
        uncached = torch.empty(MIB)  # 4 MiB: glibc's heap reuses those itself
        cached_before = _cache_stats()[1]
        del uncached
        assert _cache_stats()[1] == cached_before
        kept_past_the_block = again
        hits = _cache_stats()[3]
        assert hits >= 1
    depth, cached, live, _, _ = _cache_stats()
    assert (depth, cached) == (before[0], 0)  # torch's allocator is back, the cache freed
    assert float(kept_past_the_block.sum()) == 2.0 * kept_past_the_block.numel()
    del kept_past_the_block, again, a_bit_larger
    assert _cache_stats()[2] <= live - 2  # blocks alive at exit are freed when they die


def test_block_cache_keeps_at_most_its_limit(monkeypatch):
    monkeypatch.setattr(_kernels, "MAX_CACHED_BYTES", 25 * MIB)
    with _kernels.block_cache():
        blocks = [torch.empty(10 * MIB // 4) for _ in range(3)]  # 10 MiB each
        del blocks
        assert 0 < _cache_stats()[1] <= 25 * MIB


def test_block_cache_nests_across_threads():
    import threading

    errors = []

    def work(seed):
        try:
            generator = torch.Generator().manual_seed(seed)
            for _ in range(20):
                with _kernels.block_cache():
                    x = torch.randn(3_000_000, generator=generator)  # 12 MB
                    expected = float(x.double().sum())
                    y = x.clone()
                    assert float(y.double().sum()) == expected
        except Exception as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert _cache_stats()[:2] == (0, 0)


def test_block_cache_does_nothing_on_torchs_path(monkeypatch):
    monkeypatch.setenv(_kernels.ENVIRONMENT_VARIABLE, "torch")
    with _kernels.block_cache():
        assert _cache_stats()[0] == 0


def test_classifier_trains_and_predicts_inside_the_cache_with_the_same_results(
        small_frame, monkeypatch):
    # The cache hands out memory, nothing else: the same model bit for bit without it.
    import contextlib

    from skorch.callbacks import Callback

    from sklearn_din import DINClassifier

    depths, hits = [], []

    class RecordDepth(Callback):
        def on_epoch_end(self, net, **kwargs):
            depth, _, _, hit, _ = _cache_stats()
            depths.append(depth)
            hits.append(hit)

    X, y = small_frame
    params = dict(max_epochs=2, verbose=0, random_state=0, attention_units=(1024, 128),
                  batch_size=2048)  # activations over 8 MiB

    cached = DINClassifier(**params, callbacks=[RecordDepth()]).fit(X, y)
    assert depths == [1, 1] and hits[-1] > hits[0] > 0 and _cache_stats()[:2] == (0, 0)
    monkeypatch.setattr(_kernels, "block_cache", contextlib.nullcontext)
    plain = DINClassifier(**params).fit(X, y)
    assert (cached.predict_proba(X) == plain.predict_proba(X)).all()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_block_cache_works_in_a_child_forked_while_it_is_installed():
    # DataLoader workers fork while a fit holds the cache installed; the child allocates
    # through it (its lock starts fresh there, whoever held it in the parent).
    import multiprocessing

    with _kernels.block_cache():
        keep = torch.ones(3 * MIB)  # 12 MiB held through the fork
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as pool:
            sums = pool.map(_allocate_in_child, [3, 5])
        assert sums == [9.0 * MIB, 15.0 * MIB] and float(keep.sum()) == 3 * MIB


def _allocate_in_child(value: int) -> float:
    with _kernels.block_cache():
        x = torch.full((3 * MIB,), float(value))
        del x
        y = torch.full((3 * MIB,), float(value))
        return float(y.double().sum())
