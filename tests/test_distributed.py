"""Data-parallel training: DINClassifier(distributed=True) under torch.distributed (DDP).

The end-to-end test launches ``examples/ddp_train.py`` under torchrun with two CPU
processes (gloo) and compares rank 0's predictions with a one-process fit. The other
tests check the pieces in one process: the sharding, a one-process group, the errors.
"""

import importlib.util
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from skorch.dataset import ValidSplit

from sklearn_din import DeepInterestNetwork, DINClassifier
from sklearn_din._batching import TensorBatchIterator
from sklearn_din._distributed import DataParallel, RankZeroPrintLog, ShardedBatchIterator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(16,), lr=1e-2, max_epochs=2,
             batch_size=300, verbose=0, random_state=0)


def _load_example():
    spec = importlib.util.spec_from_file_location("example_ddp_train", EXAMPLES / "ddp_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torchrun_two_processes_match_one_process(tmp_path, capfd):
    """2 gloo processes vs 1 process, same random_state, same global batch size.

    PReLU: the gradient of each global batch is the same sum taken in another order,
    so the probabilities agree to float rounding: 1.5e-8 after 40 steps without the
    attention's length scale, 1.4e-5 with it (on by default; its six
    scales are multiplied into every score, and rounding differences in their gradients
    carry through Adam's steps). 1e-4 leaves room for
    other CPUs' summation orders but catches any change in the batches, the loss weights
    or the penalty (which move probabilities by > 1e-3).
    Dice: each process normalises with its shard's batch statistics, not the whole
    batch's, so the models differ slightly (measured 1.1e-3): bounded at 2e-2.
    """
    example = _load_example()
    assert example.__doc__ and len(example.__doc__) > 200
    assert example.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    out = capfd.readouterr().out  # the torchrun processes write to the file descriptor
    assert re.search(r"prelu: data-parallel fit on 2 processes \(gloo\)", out), out
    ones = {}
    for activation, tolerance in (("prelu", 1e-4), ("dice", 2e-2)):
        ddp = np.load(tmp_path / f"ddp_{activation}.npz")
        one = ones[activation] = np.load(tmp_path / f"one_{activation}.npy")
        assert int(ddp["world_size"]) == 2
        assert float(ddp["spread"]) == 0.0, "the processes ended with different parameters"
        assert ddp["proba"].shape == one.shape and len(one) > 100
        assert np.abs(ddp["proba"] - one).max() < tolerance, activation
        # The models trained: they moved away from the initial 0.5.
        assert np.abs(one - 0.5).max() > 0.02, activation
    # Two different models differ by far more than the PReLU tolerance.
    assert np.abs(ones["prelu"] - ones["dice"]).max() > 1e-3


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of world size 1 in this process."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("params", [
    dict(activation="dice", embedding_l2=0.01),
    dict(activation="prelu", batch_norm=True, train_split=ValidSplit(0.2, random_state=0)),
])
def test_one_process_group_gives_the_plain_fit(ctr_data, one_process_group, params, capsys):
    """World size 1: the same steps as without DDP, bit for bit, and a plain model after."""
    X, y = ctr_data.X_train, ctr_data.y_train
    plain = DINClassifier(**{**SMALL, **params}).fit(X, y)
    model = DINClassifier(**{**SMALL, **params, "verbose": 1}, distributed=True).fit(X, y)
    assert "train_loss" in capsys.readouterr().out  # rank 0 prints the table
    np.testing.assert_array_equal(model.predict_proba(ctr_data.X_test),
                                  plain.predict_proba(ctr_data.X_test))
    np.testing.assert_allclose(model.history[:, "train_loss"], plain.history[:, "train_loss"],
                               rtol=1e-6)
    # Outside fit the net holds the plain network, pickles and explains as any model.
    assert type(model.module_) is DeepInterestNetwork
    assert "data_parallel_" not in model.__dict__
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.attention_weights(ctr_data.X_test),
                                  model.attention_weights(ctr_data.X_test))


def test_distributed_without_a_process_group_is_refused(ctr_data):
    assert not dist.is_initialized()
    model = DINClassifier(**SMALL, distributed=True)
    with pytest.raises(ValueError, match=r"distributed=True.*init_process_group"):
        model.fit(ctr_data.X_train, ctr_data.y_train)
    assert not model.history_, "refused before any epoch"


def test_nccl_with_a_cpu_device_is_refused(ctr_data, monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    with pytest.raises(ValueError, match=r"device='cpu'.*'nccl'.*cuda:\{local_rank\}"):
        DINClassifier(**SMALL, distributed=True).fit(ctr_data.X_train, ctr_data.y_train)


def test_distributed_must_be_a_bool(ctr_data):
    with pytest.raises(ValueError, match="'distributed' parameter"):
        DINClassifier(**SMALL, distributed="yes").fit(ctr_data.X_train, ctr_data.y_train)


def _inputs(n_rows):
    rng = np.random.default_rng(0)
    return {
        "candidate": rng.integers(2, 50, (n_rows, 2)),
        "history": rng.integers(2, 50, (n_rows, 2, 6)),
        "history_length": rng.integers(0, 7, n_rows),
        "sparse": rng.integers(2, 9, (n_rows, 1)),
        "dense": rng.random((n_rows, 0), dtype=np.float32),
    }, np.arange(n_rows, dtype=np.float32)  # the target names each row


@pytest.mark.parametrize(("n_rows", "batch_size", "world_size"),
                         [(1000, 256, 2), (1000, 256, 3), (515, 256, 2), (7, 4, 3)])
def test_shards_partition_each_global_batch(n_rows, batch_size, world_size):
    """Together, the processes' shards are exactly the one-process batches."""
    inputs, target = _inputs(n_rows)

    def batches(make, **kwargs):
        generator = torch.Generator().manual_seed(7)
        return [y for _, y in make(inputs, target, batch_size=batch_size, shuffle=True,
                                   generator=generator, **kwargs)]

    shards = [batches(ShardedBatchIterator, rank=r, world_size=world_size)
              for r in range(world_size)]
    single = TensorBatchIterator(inputs, target, batch_size=batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(7))
    whole = [y for _, y in single]
    assert len({len(s) for s in shards}) == 1, "every process takes as many steps"
    merged = [torch.cat(parts) for parts in zip(*shards, strict=True)]
    if len(merged) == len(whole):
        for got, expected in zip(merged, whole, strict=True):
            assert torch.equal(got, expected)
    else:  # a last global batch too small for 2 rows a process was merged into the one before
        assert len(merged) == len(whole) - 1
        assert torch.equal(merged[-1], torch.cat(whole[-2:]))
    for parts in zip(*shards, strict=True):
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 2
    assert sorted(torch.cat(merged).tolist()) == list(range(n_rows))


def test_too_few_rows_for_the_processes_are_refused():
    inputs, target = _inputs(2)
    with pytest.raises(ValueError, match="2 training row.*3 processes"):
        ShardedBatchIterator(inputs, target, batch_size=4, shuffle=True, rank=0, world_size=3)


def test_processes_with_different_rows_are_refused(monkeypatch):
    """The fingerprints of the rows are compared across processes (here, a simulated other)."""
    inputs, target = _inputs(100)
    state = DataParallel.__new__(DataParallel)
    state.device = torch.device("cpu")
    other = {}

    def all_reduce(tensor, op=None):  # what a MAX all-reduce with the other process gives
        tensor.copy_(torch.maximum(tensor, other["value"]))

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    # The other process holds the same rows: no error.
    from sklearn_din._distributed import _data_fingerprint

    same = torch.tensor([100, _data_fingerprint(inputs, target)])
    other["value"] = torch.cat([same, -same])
    state.check_same_data(inputs, target)
    # One label differs on the other process.
    changed = target.copy()
    changed[5] = 1.0 - changed[5]
    differs = torch.tensor([100, _data_fingerprint(inputs, changed)])
    other["value"] = torch.cat([differs, -differs])
    with pytest.raises(ValueError, match="different training rows.*same X and y"):
        state.check_same_data(inputs, target)


def test_only_rank_zero_prints_the_epoch_table(ctr_data, monkeypatch, capsys):
    model = DINClassifier(**{**SMALL, "max_epochs": 1, "verbose": 1}).fit(
        ctr_data.X_train, ctr_data.y_train)
    capsys.readouterr()
    log = RankZeroPrintLog().initialize()
    log.on_epoch_end(model)
    assert "train_loss" in capsys.readouterr().out
    model.distributed = True
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    log.on_epoch_end(model)
    assert capsys.readouterr().out == ""
