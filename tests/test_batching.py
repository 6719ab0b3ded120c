"""Whole-batch iteration (sklearn_din._batching): a split's rows are read through an index
into the stored arrays, never copied up front, and give the batches of the copied rows."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset
from torch.utils.data import Subset

from sklearn_din._batching import WEIGHT_KEY, TensorBatchIterator, dataset_arrays


def _inputs(n_rows=50, max_len=6, seed=0):
    rng = np.random.default_rng(seed)
    history = rng.integers(2, 30, size=(n_rows, 2, max_len)).astype(np.int32)
    length = rng.integers(0, max_len + 1, size=n_rows).astype(np.int32)
    history *= np.arange(max_len)[None, None, :] < length[:, None, None]  # padding is 0
    inputs = {"candidate": rng.integers(2, 30, size=(n_rows, 2)).astype(np.int32),
              "history": history, "history_length": length,
              "sparse": rng.integers(2, 9, size=(n_rows, 1)).astype(np.int32),
              "dense": rng.normal(size=(n_rows, 1)).astype(np.float32),
              WEIGHT_KEY: rng.uniform(0.5, 2, size=n_rows)}
    return inputs, rng.integers(0, 2, size=n_rows).astype(np.float32)


def test_a_subset_gives_the_stored_arrays_and_its_rows_without_copying():
    inputs, target = _inputs()
    outer = np.array([3, 5, 7, 11, 13, 17, 19, 23])
    nested = Subset(Subset(Dataset(inputs, target), outer), [1, 2, -1])
    arrays = dataset_arrays(nested)
    for key, values in inputs.items():
        assert np.shares_memory(arrays.inputs[key], values), key
    assert np.shares_memory(arrays.target, target)
    np.testing.assert_array_equal(arrays.rows, [5, 7, 23])  # composed, negative as numpy
    assert arrays.n_rows == 3
    np.testing.assert_array_equal(arrays.column(WEIGHT_KEY), inputs[WEIGHT_KEY][[5, 7, 23]])
    whole = dataset_arrays(Dataset(inputs, target))
    assert whole.rows is None and whole.n_rows == 50
    assert whole.column(WEIGHT_KEY) is inputs[WEIGHT_KEY]


def test_the_iterator_shares_the_arrays_memory():
    inputs, target = _inputs()
    batches = TensorBatchIterator(inputs, target, batch_size=8, shuffle=False,
                                  rows=np.arange(0, 50, 2))
    for key, values in inputs.items():
        assert np.shares_memory(batches.inputs[key].numpy(), values), key
    assert np.shares_memory(batches.target.numpy(), target)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [7, 16, -1])
def test_rows_give_the_batches_of_the_copied_rows(shuffle, batch_size):
    inputs, target = _inputs()
    rows = np.sort(np.random.default_rng(1).choice(50, size=29, replace=False))
    copied = TensorBatchIterator({k: v[rows] for k, v in inputs.items()}, target[rows],
                                 batch_size=batch_size, shuffle=shuffle,
                                 generator=torch.Generator().manual_seed(5))
    indexed = TensorBatchIterator(inputs, target, batch_size=batch_size, shuffle=shuffle,
                                  generator=torch.Generator().manual_seed(5), rows=rows)
    assert len(indexed) == len(copied)
    for _ in range(2):  # two passes: the same shuffles drawn from the generator
        pairs = list(zip(copied, indexed, strict=True))
        assert len(pairs) == len(copied)
        for (want, want_y), (got, got_y) in pairs:
            assert want.keys() == got.keys()
            for key in want:
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
            torch.testing.assert_close(got_y, want_y, rtol=0, atol=0)


def test_an_accelerator_receives_only_the_rows_it_iterates():
    inputs, target = _inputs()
    rows = np.array([4, 9, 16, 25, 36, 49])
    batches = TensorBatchIterator(inputs, target, batch_size=4, shuffle=True,
                                  device="meta", rows=rows)  # shapes only, no data
    assert batches.rows is None and batches.n_rows == len(rows) and len(batches) == 2
    for key, values in inputs.items():
        assert batches.inputs[key].device.type == "meta", key
        assert tuple(batches.inputs[key].shape) == (len(rows), *values.shape[1:]), key
    assert tuple(batches.target.shape) == (len(rows),)
