"""Large arrays written once, mapped in ordinary pages instead of numpy's huge pages.

On Linux numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``)
for every allocation of 4 MiB or more. Where the kernel honours that advice only on
request (``/sys/kernel/mm/transparent_hugepage/enabled`` set to ``madvise``, the common
default), each first write to a 2 MiB page faults in and zeroes the whole page. On a
virtual machine whose host takes freed memory back (free page reporting, as here), those
pages are the ones the host has reclaimed: filling a fresh 611 MB int32 block (a 1M-row
transform's output) took 1.1-1.7 s with the advice and 0.25 s without it. The output of
a transform is written once, in row order, so huge pages buy it nothing to offset that.
"""

from __future__ import annotations

import errno
import mmap
import sys

import numpy as np

# numpy's own threshold for the advice (its HUGEPAGE_THRESHOLD): below it, np.empty as is.
_HUGE_PAGE_ADVICE_BYTES = 4 << 20


def empty_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-ordered array, in ordinary pages where numpy would advise huge ones.

    The memory is an anonymous private mapping (the array's ``base``), released when the
    last array that views it is; pickling or copying the array copies its values as for
    any other array. Raises MemoryError, as np.empty does, when the memory is not there.
    """
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not sys.platform.startswith("linux") or n_bytes < _HUGE_PAGE_ADVICE_BYTES:
        return np.empty(shape, dtype=dtype)
    try:
        pages = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as error:
        if error.errno != errno.ENOMEM:
            raise
        raise MemoryError(f"Unable to allocate {n_bytes / 2**20:,.0f} MiB for an array with "
                          f"shape {tuple(shape)} and data type {dtype}") from error
    return np.frombuffer(pages, dtype=dtype).reshape(shape)
