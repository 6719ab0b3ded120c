"""Whole-batch iteration over pre-built tensors.

skorch's default ``DataLoader`` indexes and collates one row at a time (about
10 us a row). Here each batch is one gather per input tensor, and each batch's
history is cut to its longest real history before the gather, so padding is
neither copied nor computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from skorch.dataset import Dataset
from torch.utils.data import Subset

INPUT_KEYS = frozenset({"candidate", "history", "history_length", "sparse", "dense"})
# Optional: each row's weight in the loss, batched with the inputs so that every split
# (skorch's ValidSplit, a distributed shard) keeps it aligned with its rows.
WEIGHT_KEY = "sample_weight"


@dataclass(frozen=True)
class DatasetArrays:
    """The arrays behind a dataset: ``inputs`` and ``target`` as stored, and ``rows``, the
    stored rows the dataset holds, in order (None: every row)."""

    inputs: dict
    target: object
    rows: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Rows of the dataset."""
        return len(self.inputs["history_length"]) if self.rows is None else len(self.rows)

    def column(self, key: str) -> np.ndarray | None:
        """The dataset's rows of one input (a copy of those rows), None if it has none."""
        values = self.inputs.get(key)
        if values is None or self.rows is None:
            return values
        return np.asarray(values)[self.rows]


def dataset_arrays(dataset: object) -> DatasetArrays | None:
    """The arrays behind a skorch Dataset or a (nested) Subset of one, without copying.

    A Subset (early stopping's split, skorch's ``ValidSplit``) gives the full arrays and
    the index of its rows: gathering them would copy most of the training data.
    Returns None for any other dataset, which is then served by skorch's own iterator.
    """
    if isinstance(dataset, Subset):
        inner = dataset_arrays(dataset.dataset)
        if inner is None:
            return None
        index = np.asarray(dataset.indices, dtype=np.int64)
        index = np.where(index < 0, index + inner.n_rows, index)  # as numpy reads them
        return replace(inner, rows=index if inner.rows is None else inner.rows[index])
    ours = isinstance(dataset, Dataset) and isinstance(dataset.X, dict)
    if ours and set(dataset.X) - {WEIGHT_KEY} == INPUT_KEYS:
        return DatasetArrays(dataset.X, dataset.y)
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
    rows : array of int or None, default=None
        The rows of ``inputs`` and ``target`` to iterate, in this order (a split's rows);
        None: every row. The batches are those of the arrays ``inputs[rows]``,
        ``target[rows]``: on the CPU gathered batch by batch from the arrays' own memory,
        on an accelerator copied there (only these rows) once.
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
        rows: np.ndarray | None = None,
    ) -> None:
        device = torch.device(device)
        cpu = torch.device("cpu")
        index = None if rows is None else torch.from_numpy(np.asarray(rows, dtype=np.int64))

        def held(values: object) -> torch.Tensor:
            if index is None or device.type == "cpu":
                return _as_tensor(values, device)
            # An accelerator holds a copy anyway: only these rows go there, one input at a
            # time (the full arrays would go there once per iterator, training and validation).
            return _rows(_as_tensor(values, cpu), index).to(device)

        self.inputs = {k: held(v) for k, v in inputs.items()}
        self.target = None if target is None else held(target)
        self.rows = index if device.type == "cpu" else None
        self.n_rows = len(self.inputs["history_length"] if self.rows is None else self.rows)
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

    def stored_rows(self, index: torch.Tensor | slice) -> torch.Tensor | slice:
        """The stored rows of the iterated rows ``index`` (positions in ``rows``)."""
        return index if self.rows is None else self.rows[index]

    def _gather(self, index: torch.Tensor | slice) -> tuple[dict, torch.Tensor | None]:
        """The batch of rows ``index``, its history cut to its longest real history."""
        index = self.stored_rows(index)
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
