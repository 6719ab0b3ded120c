"""Data-parallel training with PyTorch's DistributedDataParallel (DDP).

``DINClassifier(distributed=True)`` trains in every process of a
``torch.distributed`` job (launched with ``torchrun``), each process on its
shard of every batch, with DDP averaging the gradients. This module holds that
plumbing; the classifier calls it from skorch's hooks (``fit_loop``,
``get_iterator``, ``infer``, ``get_loss``, ``train_step_single``,
``run_single_epoch``).

Design, and why:

- The DDP wrapper exists only inside ``fit_loop``; ``module_`` stays the plain
  network. Pickling, ``save_model``, ``attention_weights`` and prediction never
  see DDP, and no collective runs outside training steps, so rank 0 alone can
  predict or save without the other processes.
- Every process holds the full training set and walks the same shuffled order
  of global batches of ``batch_size`` rows (the shuffling seed is broadcast
  from rank 0); each takes a contiguous shard of each global batch. With the
  loss of each shard weighted by its share of the global batch, the averaged
  gradient is the single-process gradient of that global batch: the same
  ``batch_size``, ``lr`` and number of steps as a one-process fit.
- Batch statistics (Dice, ``batch_norm``) are computed per shard, as in any
  DDP training without synchronised normalisation (``torch.nn.SyncBatchNorm``
  refuses CPU tensors and does not cover Dice). Running statistics are
  averaged over the processes after each training epoch, so every process
  validates and predicts with the same model.
- The loss that is logged, and checked for NaN, is the global batch's,
  reduced over the processes: every process sees the same value and stops
  together rather than leaving the others waiting in a collective.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from skorch.callbacks import PrintLog
from skorch.utils import to_tensor
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ._batching import DatasetArrays, TensorBatchIterator
from ._network import Dice


def check_process_group(device: object) -> None:
    """Refuse ``distributed=True`` without a usable default process group.

    Raises
    ------
    ValueError
        When torch.distributed is unavailable, the default process group is not
        initialised, or the backend cannot hold tensors on ``device``.
    """
    if not dist.is_available():
        raise ValueError("distributed=True but this torch build has no torch.distributed.")
    if not dist.is_initialized():
        raise ValueError(
            "distributed=True but torch.distributed's default process group is not "
            "initialised: launch the script with torchrun (or accelerate launch) and call "
            "torch.distributed.init_process_group('gloo') (CPU) or ('nccl') (CUDA) before fit."
        )
    backend = str(dist.get_backend()).lower()
    kind = torch.device(device or "cpu").type
    if backend == "nccl" and kind != "cuda":
        raise ValueError(
            f"distributed=True with device={device!r}, but the process group's backend is "
            "'nccl', which only holds CUDA tensors: pass device=f'cuda:{local_rank}' or "
            "initialise the process group with the 'gloo' backend."
        )


def _data_fingerprint(inputs: dict, target: object, rows: np.ndarray | None = None) -> int:
    """A 56-bit digest of the training rows (the arrays and, for a split, which of their
    rows train), to check every process holds the same ones."""
    digest = hashlib.blake2b(digest_size=7)
    weights = [inputs["sample_weight"]] if "sample_weight" in inputs else []
    split = [] if rows is None else [rows]
    for values in (inputs["candidate"], inputs["history_length"], inputs["sparse"], *weights,
                   target, *split):
        array = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        digest.update(np.ascontiguousarray(array).tobytes())
    return int.from_bytes(digest.digest(), "little")


class ShardedBatchIterator(TensorBatchIterator):
    """This process's contiguous shard of each global batch.

    Every process draws the same permutation (same ``generator`` seed) and the
    same global batches; the shards of one global batch differ in size by at
    most one row. ``global_index`` holds the (stored) rows of the global batch whose
    shard was yielded last (for the loss weights and the embedding penalty).
    """

    def __init__(self, inputs: dict, target: object, *, rank: int, world_size: int,
                 **kwargs: object) -> None:
        super().__init__(inputs, target, **kwargs)
        if self.n_rows < world_size:
            raise ValueError(
                f"distributed=True: {self.n_rows} training row(s) cannot be shared by "
                f"{world_size} processes; each needs at least one row."
            )
        self.rank = rank
        self.world_size = world_size
        self.global_index: torch.Tensor | slice = slice(0, 0)

    def _global_bounds(self) -> list[tuple[int, int]]:
        bounds = super()._bounds()
        # A shard of one row has no batch statistics (Dice, BatchNorm): merge a last global
        # batch too small to give every process two rows into the one before it.
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2 * self.world_size:
            bounds[-2:] = [(bounds[-2][0], self.n_rows)]
        return bounds

    def _shard(self, start: int, stop: int) -> tuple[int, int]:
        size = stop - start
        return (start + self.rank * size // self.world_size,
                start + (self.rank + 1) * size // self.world_size)

    def _bounds(self) -> list[tuple[int, int]]:
        return [self._shard(start, stop) for start, stop in self._global_bounds()]

    def global_rows(self) -> int:
        """Rows of the current global batch."""
        index = self.global_index
        return index.stop - index.start if isinstance(index, slice) else len(index)

    def __iter__(self) -> Iterator[tuple[dict, torch.Tensor | None]]:
        order = self._order()
        for start, stop in self._global_bounds():
            first, last = self._shard(start, stop)
            if order is None:
                self.global_index = self.stored_rows(slice(start, stop))
                yield self._gather(slice(first, last))
            else:
                self.global_index = self.stored_rows(order[start:stop])
                yield self._gather(order[first:last])

    def global_batch(self) -> dict:
        """Inputs of the current global batch (the whole history, uncut)."""
        return {key: value[self.global_index] for key, value in self.inputs.items()}


class DataParallel:
    """The DDP wrapper of one ``fit_loop`` and what the hooks need around it.

    A plain object, not a ``torch.nn.Module``: skorch registers every module set
    on a net as a component to pickle, save and move between devices.

    Parameters
    ----------
    module : torch.nn.Module
        The plain network (``module_``), already on ``device``.
    device : str or torch.device
        The net's device; for CUDA, the GPU this process trains on.
    """

    def __init__(self, module: nn.Module, device: object) -> None:
        self.module = module
        self.device = torch.device(device or "cpu")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        device_ids = None
        if self.device.type == "cuda":
            device_ids = [self.device.index if self.device.index is not None
                          else torch.cuda.current_device()]
        # No buffer sync at each forward: DDP would send every buffer, the
        # vocabulary-sized inverse id frequencies included, at every step. The running
        # statistics are averaged once per epoch instead (sync_running_stats). torch 2.13
        # renamed the switch (the old name warns); older versions know only the old one.
        sync_option = ("forward_sync_buffers" if "forward_sync_buffers"
                       in inspect.signature(DistributedDataParallel).parameters
                       else "broadcast_buffers")
        self.ddp = DistributedDataParallel(module, device_ids=device_ids, **{sync_option: False})
        self.iterator: ShardedBatchIterator | None = None

    def training_batches(self, arrays: DatasetArrays, *, seed: int,
                         batch_size: int) -> ShardedBatchIterator:
        """This process's shards of the global batches of ``arrays``' rows, shuffled with
        rank 0's ``seed``."""
        self.check_same_data(arrays.inputs, arrays.target, arrays.rows)
        value = torch.tensor([seed], dtype=torch.int64, device=self.device)
        dist.broadcast(value, src=0)
        self.iterator = ShardedBatchIterator(
            arrays.inputs, arrays.target, rows=arrays.rows, rank=self.rank,
            world_size=self.world_size, batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(int(value.item())), device=self.device,
        )
        return self.iterator

    def check_same_data(self, inputs: dict, target: object,
                        rows: np.ndarray | None = None) -> None:
        """Raise on every process if the processes do not hold the same training rows
        (``rows`` of the arrays, or all of them)."""
        n_rows = len(inputs["history_length"]) if rows is None else len(rows)
        mine = torch.tensor([n_rows, _data_fingerprint(inputs, target, rows)], dtype=torch.int64,
                            device=self.device)
        both = torch.cat([mine, -mine])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        if not torch.equal(both[:2], -both[2:]):
            raise ValueError(
                "distributed=True: the processes hold different training rows (row counts "
                f"from {int(-both[2])} to {int(both[0])}). Every process must call fit with "
                "the same X and y; a train_split needs a fixed random_state (e.g. "
                "ValidSplit(0.1, random_state=0)) to split them the same way."
            )

    def shard_weight(self, shard_rows: int) -> float:
        """Weight of a shard's mean loss so that DDP's average is the global batch mean."""
        if self.iterator is None or not self.iterator.global_rows():
            return 1.0
        return self.world_size * shard_rows / self.iterator.global_rows()

    def global_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The mean over processes of their weighted shard losses: the global batch loss."""
        value = loss.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def sync_running_stats(self) -> None:
        """Average the running statistics of Dice and BatchNorm layers over the processes.

        Each process updated them from its own shards; averaged, every process
        predicts the same, and the running mean equals that of the global batches.
        """
        stats = [
            buffer
            for layer in self.module.modules()
            if isinstance(layer, Dice | nn.BatchNorm1d)
            for buffer in (layer.running_mean, layer.running_var)
            if buffer is not None
        ]
        if not stats:
            return
        flat = torch.cat([s.reshape(-1) for s in stats])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for s in stats:
            s.copy_(flat[offset : offset + s.numel()].view_as(s))
            offset += s.numel()


class DataParallelMixin:
    """skorch hooks that train through DDP while ``fit_loop`` holds ``data_parallel_``.

    For a net with a ``distributed`` parameter. The classifier's own hooks do the
    rest: ``get_iterator`` asks ``data_parallel_`` for the shards and
    ``get_loss`` weights each shard's loss.
    """

    def fit_loop(self, X: object, y: object = None, epochs: int | None = None,
                 **fit_params: object) -> object:
        """skorch's loop, inside ``data_parallel`` when ``distributed=True``."""
        if not self.distributed:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        with data_parallel(self):
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def infer(self, x: object, **fit_params: object) -> torch.Tensor:
        """The forward pass: through the DDP wrapper in training steps, else the plain module."""
        parallel = self.__dict__.get("data_parallel_")
        # Only training steps go through DDP: validation and prediction stay local, so they
        # never wait on the other processes.
        if parallel is None or not (self.module_.training and torch.is_grad_enabled()):
            return super().infer(x, **fit_params)
        x = to_tensor(x, device=self.device)
        if isinstance(x, dict):
            return parallel.ddp(**self._merge_x_and_fit_params(x, fit_params))
        return parallel.ddp(x, **fit_params)

    def train_step_single(self, batch: object, **fit_params: object) -> dict:
        """skorch's step; in a distributed fit the step reports the global batch's loss."""
        step = super().train_step_single(batch, **fit_params)
        parallel = self.__dict__.get("data_parallel_")
        if parallel is not None:
            step["loss"] = parallel.global_loss(step["loss"])
        return step

    def run_single_epoch(self, iterator: object, training: bool, prefix: str,
                         step_fn: object, **fit_params: object) -> None:
        """skorch's epoch; after a distributed training epoch, average running statistics."""
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        parallel = self.__dict__.get("data_parallel_")
        if parallel is not None and training:
            parallel.sync_running_stats()


@contextlib.contextmanager
def data_parallel(net: object) -> Iterator[DataParallel]:
    """Wrap ``net.module_`` in DDP for the block, as ``net.data_parallel_``.

    The attribute is removed however the block ends, so that the net pickles
    and predicts as a plain model afterwards.
    """
    check_process_group(net.device)
    state = DataParallel(net.module_, net.device)
    net.data_parallel_ = state
    try:
        yield state
    finally:
        net.__dict__.pop("data_parallel_", None)


def is_secondary_process(net: object) -> bool:
    """True in the processes of a distributed fit other than rank 0."""
    return bool(getattr(net, "distributed", False)) and dist.is_available() and (
        dist.is_initialized() and dist.get_rank() != 0
    )


class RankZeroPrintLog(PrintLog):
    """skorch's epoch table, printed by rank 0 only in a distributed fit.

    Every process has the same history (global losses, same validation scores),
    so one table says it all.
    """

    def on_epoch_end(self, net: object, **kwargs: object) -> None:
        if is_secondary_process(net):
            return
        super().on_epoch_end(net, **kwargs)
