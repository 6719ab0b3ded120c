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
    if ours and set(dataset.X) == INPUT_KEYS:
        return dataset.X, dataset.y
    return None


def _as_tensor(values: object, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device)
    array = np.asarray(values)
    with warnings.catch_warnings():
        # pandas' copy-on-write hands out read-only views of the caller's frame; the
        # tensors are only ever read, so they share that memory instead of copying it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).to(device)


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
        return len(self._bounds())

    def __iter__(self) -> Iterator[tuple[dict, torch.Tensor | None]]:
        order = None
        if self.shuffle:
            order = torch.randperm(self.n_rows, generator=self.generator)
            order = order.to(self.inputs["history_length"].device)
        lengths = self.inputs["history_length"]
        for start, stop in self._bounds():
            index = order[start:stop] if order is not None else slice(start, stop)
            longest = int(lengths[index].max()) if stop > start else 0
            batch = {
                key: (value[:, :, :longest] if key == "history" else value)[index]
                for key, value in self.inputs.items()
            }
            yield batch, None if self.target is None else self.target[index]
