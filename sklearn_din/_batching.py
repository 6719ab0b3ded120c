"""Whole-batch iteration over pre-built tensors, or over a stream of chunks of them.

skorch's default ``DataLoader`` indexes and collates one row at a time (about
10 us a row). Here each batch is one gather per input tensor, and each batch's
history is cut to its longest real history before the gather, so padding is
neither copied nor computed. A :class:`StreamDataset` is served the same way one
chunk at a time, for data larger than memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from skorch.dataset import Dataset
from torch.utils.data import IterableDataset, Subset

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


class StreamDataset(IterableDataset):
    """A source of (inputs, target) chunks that can be read again and again.

    ``DINClassifier.get_iterator`` turns it into batches chunk by chunk, so one skorch
    epoch is one pass over the whole source and only one chunk is in memory at a time.

    Parameters
    ----------
    chunks : callable
        ``chunks(rng)`` returns a new iterator of (inputs, target) pairs, ``inputs`` a
        dict of arrays as :class:`TensorBatchIterator` takes them. ``rng`` (a numpy
        Generator, or None for the source's own order) may reorder the chunks.
    """

    def __init__(self, chunks: Callable[[np.random.Generator | None], Iterator]) -> None:
        self.chunks = chunks

    def batches(
        self,
        *,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> StreamBatchIterator:
        """An iterable of batches; each pass over it reads the source once more."""
        return StreamBatchIterator(self, batch_size=batch_size, shuffle=shuffle,
                                   generator=generator, device=device)

    def __iter__(self) -> Iterator[tuple[dict, torch.Tensor | None]]:
        return iter(self.batches(batch_size=-1, shuffle=False))


class StreamBatchIterator:
    """Batches of a :class:`StreamDataset`: chunk by chunk, each chunk's rows shuffled.

    With ``shuffle``, each pass draws a new chunk order and each chunk a new row order.
    The chunk order comes from its own random stream (seeded by ``generator``'s seed
    and the pass number), so the rows' shuffles draw from ``generator`` exactly as
    :class:`TensorBatchIterator` does: a stream of one chunk gives the same batches
    as the in-memory iterator with the same generator.
    """

    def __init__(
        self,
        dataset: StreamDataset,
        *,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        device: torch.device | str,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = device
        self.passes = 0

    def __iter__(self) -> Iterator[tuple[dict, torch.Tensor | None]]:
        rng = None
        if self.shuffle:
            seed = self.generator.initial_seed() if self.generator is not None else None
            rng = np.random.default_rng(None if seed is None else [seed, self.passes])
        self.passes += 1
        for inputs, target in self.dataset.chunks(rng):
            yield from TensorBatchIterator(
                inputs, target, batch_size=self.batch_size, shuffle=self.shuffle,
                generator=self.generator, device=self.device,
            )
