"""A dataset that streams chunks of pre-built tensors: one pass over it is one epoch.

``DINClassifier.get_iterator`` serves a :class:`StreamDataset` chunk by chunk with
the same whole-batch iterator as in-memory data, so only one chunk is in memory at a
time (see ``fit_stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from ._batching import TensorBatchIterator, batch_count


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
    chunk_rows : sequence of int, default=()
        Rows of each chunk, when known: gives the dataset a length (skorch's
        ``ProgressBar`` and the classifier's ``verbose=2`` progress need one).
    """

    def __init__(self, chunks: Callable[[np.random.Generator | None], Iterator],
                 chunk_rows: Sequence[int] = ()) -> None:
        self.chunks = chunks
        self.chunk_rows = tuple(chunk_rows)

    def __len__(self) -> int:
        """Rows in one pass (0 when the chunks' sizes were not given)."""
        return sum(self.chunk_rows)

    def n_batches(self, batch_size: int, *, shuffle: bool) -> int | None:
        """Batches in one pass (batches do not cross chunks); None when sizes are unknown."""
        if not self.chunk_rows:
            return None
        return sum(batch_count(rows, batch_size, shuffle) for rows in self.chunk_rows)

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
