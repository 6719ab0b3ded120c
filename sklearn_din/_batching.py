"""Whole-batch iteration over pre-built tensors.

skorch's default ``DataLoader`` indexes and collates one row at a time (about
10 us a row). Here each batch is one gather per input tensor, and each batch's
history is cut to its longest real history before the gather, so padding is
neither copied nor computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch
from skorch.dataset import Dataset
from torch.utils.data import Subset

INPUT_KEYS = frozenset({"candidate", "history", "history_length", "sparse", "dense"})
# Optional: each row's weight in the loss, batched with the inputs so that every split
# (skorch's ValidSplit, a distributed shard) keeps it aligned with its rows.
WEIGHT_KEY = "sample_weight"


def dataset_arrays(dataset: object) -> tuple[dict, object] | None:
    """The (inputs, target) arrays behind a skorch Dataset or a Subset of one.

    Returns None for any other dataset, which is then served by skorch's own iterator.
    """
    if isinstance(dataset, Subset):
        inner = dataset_arrays(dataset.dataset)
        if inner is None:
            return None
        inputs, target = inner
        index = np.asarray(dataset.indices)
        return (
            {k: v[index] for k, v in inputs.items()},
            None if target is None else target[index],
        )
    ours = isinstance(dataset, Dataset) and isinstance(dataset.X, dict)
    if ours and set(dataset.X) - {WEIGHT_KEY} == INPUT_KEYS:
        return dataset.X, dataset.y
    return None


def batch_count(n_rows: int, batch_size: int, shuffle: bool) -> int:
    """Batches a :class:`TensorBatchIterator` of ``n_rows`` rows yields in one pass."""
    size = n_rows if batch_size == -1 else batch_size
    count = -(-n_rows // size) if n_rows else 0
    # A last training batch of one row is merged into the one before it (see _bounds).
    return count - 1 if shuffle and count > 1 and n_rows - (count - 1) * size == 1 else count


def _as_tensor(values: object, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device)
    array = np.asarray(values)
    with warnings.catch_warnings():
        # pandas' copy-on-write hands out read-only views of the caller's frame; the
        # tensors are only ever read, so they share that memory instead of copying it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).to(device)


def _rows(values: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
    # index_select gathers whole rows; values[index] (advanced indexing) is several times
    # slower on CPU.
    return values[index] if isinstance(index, slice) else values.index_select(0, index)


class TensorBatchIterator:
    """Iterate (inputs, target) batches of a dict of tensors.

    Parameters
    ----------
    inputs : dict of str -> array
        The network's inputs, rows first.
    target : array or None
        Targets, or None at prediction time.
    batch_size : int
        Rows per batch.
    shuffle : bool
        Draw a new row order from ``generator`` at each pass (training).
    generator : torch.Generator or None
        Source of the shuffles.
    device : torch.device
        Where the tensors live; moved there once, not per batch.
    """

    def __init__(
        self,
        inputs: dict,
        target: object,
        *,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        device = torch.device(device)
        self.inputs = {k: _as_tensor(v, device) for k, v in inputs.items()}
        self.target = None if target is None else _as_tensor(target, device)
        self.n_rows = len(self.inputs["history_length"])
        self.batch_size = self.n_rows if batch_size == -1 else batch_size
        self.shuffle = shuffle
        self.generator = generator

    def _bounds(self) -> list[tuple[int, int]]:
        bounds = [(s, min(s + self.batch_size, self.n_rows)) for s in range(0, self.n_rows,
                                                                             self.batch_size)]
        # A training batch of one row has no batch statistics (Dice, BatchNorm): merge it.
        if self.shuffle and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], self.n_rows)]
        return bounds

    def __len__(self) -> int:
        return batch_count(self.n_rows, self.batch_size, self.shuffle)

    def _order(self) -> torch.Tensor | None:
        """This pass's row order: a fresh permutation when shuffling, else None (as stored)."""
        if not self.shuffle:
            return None
        order = torch.randperm(self.n_rows, generator=self.generator)
        return order.to(self.inputs["history_length"].device)

    def _gather(self, index: torch.Tensor | slice) -> tuple[dict, torch.Tensor | None]:
        """The batch of rows ``index``, its history cut to its longest real history."""
        lengths = _rows(self.inputs["history_length"], index)
        longest = int(lengths.max()) if len(lengths) else 0
        batch = {
            key: _rows(value[:, :, :longest] if key == "history" else value, index)
            for key, value in self.inputs.items()
        }
        return batch, None if self.target is None else _rows(self.target, index)

    def __iter__(self) -> Iterator[tuple[dict, torch.Tensor | None]]:
        order = self._order()
        for start, stop in self._bounds():
            yield self._gather(order[start:stop] if order is not None else slice(start, stop))
