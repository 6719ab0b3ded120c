"""Compiled kernels for the network's hot elementwise work, with torch's ops as fallback.

Dice's chain of elementwise steps is a third of a training step and of a serving
request when composed of torch's ops (each one pass over tens of MB, and torch's sigmoid
is slow); ``_dice_kernels.cpp`` does it in one pass. It is built on first use with
:func:`torch.utils.cpp_extension.load` (a few seconds, once per machine and torch
version; cached under ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``)
for the CPU capability torch dispatches to, so nothing is compiled at install time.

The environment variable ``SKLEARN_DIN_KERNELS`` chooses:

- ``"auto"`` (default): the compiled kernels where they build; otherwise one warning
  and torch's ops (the same function to float rounding; Dice itself 1.3-2.9x slower);
- ``"compiled"``: the compiled kernels or an error saying why they did not build;
- ``"torch"``: torch's ops only.

Both paths compute the same function; they differ by float rounding (about 1e-7
absolute in Dice's gate: the kernel's sigmoid has its own exponential, ``_vec_math.h``),
so a model fitted with one is reproduced exactly only with the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# The network imports this module and knows nothing of scikit-learn, so neither does this
# module at import time; _messages (which imports it) is loaded only to warn.
logger = logging.getLogger("sklearn_din")

ENVIRONMENT_VARIABLE = "SKLEARN_DIN_KERNELS"
CHOICES = ("auto", "compiled", "torch")
SOURCE = Path(__file__).with_name("_dice_kernels.cpp")
# Built into the same library: the allocator that keeps large freed blocks (block_cache),
# and the inference MLP as one pass (_fused_mlp.py). Both kernel sources include _vec_math.h.
CACHE_SOURCE = Path(__file__).with_name("_block_cache.cpp")
MLP_SOURCE = Path(__file__).with_name("_mlp_kernels.cpp")
# The most freed memory block_cache keeps at a time; blocks freed beyond it go back.
MAX_CACHED_BYTES = 1 << 30

# Compiler flags per ATen CPU capability: those torch builds its own kernels of that
# capability with, so ATen's Vectorized<float> takes the same code path.
_CAPABILITY_FLAGS = {
    "AVX512": ["-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512", "-mavx512f",
               "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    "AVX2": ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"],
    "DEFAULT": [],
}

_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # capability -> ops namespace, or the exception it raised


def choice() -> str:
    """The value of ``SKLEARN_DIN_KERNELS``, checked."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE} must be one of {CHOICES}, got {value!r}."
        )
    return value


def capability() -> str:
    """The capability to build for: torch's own, where the source supports it."""
    name = torch.backends.cpu.get_cpu_capability()
    return name if name in _CAPABILITY_FLAGS else "DEFAULT"


def load(for_capability: str | None = None) -> Any:
    """The compiled ops (``torch.ops`` namespace) for a capability, built if need be.

    Raises whatever the build raised (no compiler, no ninja, unwritable cache), every
    time it is asked again in this process.
    """
    name = for_capability or capability()
    with _lock:
        if name not in _loaded:
            _loaded[name] = _build(name)
        result = _loaded[name]
    if isinstance(result, BaseException):
        raise result
    return result


def _build(name: str) -> Any:
    from torch.utils import cpp_extension

    # One build per torch install: builds against another torch's headers would replace
    # each other in torch's cache at every switch between environments.
    install = hashlib.sha1(os.path.dirname(torch.__file__).encode()).hexdigest()[:8]
    version = torch.__version__.replace(".", "_").replace("+", "_")
    namespace = f"sklearn_din_{name.lower()}"
    # at::parallel_for is OpenMP pragmas in ATen's headers: without -fopenmp it runs on
    # one thread. The extension then shares torch's libgomp (same soname, loaded first).
    openmp = (["-fopenmp"] if sys.platform.startswith("linux")
              and torch.backends.openmp.is_available() else [])
    logger.info("Loading sklearn-din's compiled kernels for %s (built on first use: a few "
                "seconds, once per machine and torch install).", name)
    try:
        cpp_extension.load(
            f"{namespace}_torch_{version}_{install}",
            sources=[str(SOURCE), str(CACHE_SOURCE), str(MLP_SOURCE)],
            extra_cflags=["-O3", f"-DSKLEARN_DIN_NAMESPACE={namespace}",
                          *_CAPABILITY_FLAGS[name], *openmp],
            extra_ldflags=openmp,
            is_python_module=False, verbose=False,
        )
    except Exception as error:  # the compiler's own message says what is missing
        return RuntimeError(f"sklearn-din's compiled kernels (Dice, the inference MLP pass, "
                            f"the block cache) did not build for {name}: {error}")
    return getattr(torch.ops, namespace)


def dice_ops(x: torch.Tensor, alpha: torch.Tensor) -> Any:
    """The compiled Dice ops to run on ``x`` with ``alpha``, or None for torch's ops."""
    return compiled_ops(x, alpha)


def compiled_ops(*tensors: torch.Tensor) -> Any:
    """The compiled ops to run on ``tensors``, or None for torch's ops.

    None unless every tensor is a plain float32 CPU tensor of at least one dimension, and
    while torch traces or compiles (the exported graphs hold torch's own ops, and inductor
    fuses them itself).
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    for t in tensors:
        if (type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter)) \
                or t.dtype != torch.float32 or t.device.type != "cpu" or t.dim() == 0:
            return None
    return _chosen_ops()


def prepare() -> None:
    """Load (or build) the kernels now, as the chosen path would on first use.

    Called when a classifier builds a network with Dice for the CPU, so that the build,
    the loading and a fallback's warning happen before training, not in its first epoch.
    """
    _chosen_ops()


@contextlib.contextmanager
def block_cache() -> Iterator[None]:
    """Inside the block, torch's CPU tensors of 8 MiB or more reuse freed memory.

    glibc hands every CPU block over its mmap threshold (32 MiB at most) fresh pages and
    unmaps them when freed, so a training step's largest activations page-fault in anew
    each step (``_block_cache.cpp``). Inside this block torch's CPU allocator is the
    compiled library's cache, which keeps up to ``MAX_CACHED_BYTES`` of freed blocks for
    the next tensors of their size; on leaving it the previous allocator is back and the
    cache is freed. Nestable and thread-safe; nothing changes where the compiled library
    is not chosen (``SKLEARN_DIN_KERNELS=torch``, or ``auto``'s fallback).
    """
    ops = _chosen_ops()
    entered = ops is not None and bool(ops.block_cache_enter(MAX_CACHED_BYTES))
    try:
        yield
    finally:
        if entered:
            ops.block_cache_exit()


def _chosen_ops() -> Any:
    """The compiled ops ``SKLEARN_DIN_KERNELS`` chooses, loaded (or built) if need be;
    None for torch's ops: chosen, or ``auto``'s fallback after one warning."""
    wanted = choice()
    if wanted == "torch":
        return None
    try:
        return load()
    except RuntimeError as error:
        if wanted == "compiled":
            raise
        _warn_once(error)
        return None


_warned = threading.Event()


def _warn_once(error: Exception) -> None:
    if not _warned.is_set():
        _warned.set()
        from ._messages import warn

        warn(f"{error}. Dice and the inference MLPs run on torch's ops instead (the same "
             "function, slower), and fits and predictions on torch's own allocator; set "
             f"{ENVIRONMENT_VARIABLE}=torch to choose that without this warning.",
             RuntimeWarning)
