"""The transform's output block is mapped in ordinary pages, not numpy's huge pages.

Why it matters is in ``sklearn_din/_memory.py``: where the kernel grants huge pages on
request, numpy's advice made a 1M-row output 4-6x slower to fill here. The page kind is
read back from the kernel (``/proc/self/smaps``: ``hg`` in a mapping's ``VmFlags`` is the
huge-page advice), so these tests fail if the advice comes back.
"""

from __future__ import annotations

import gc
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_din import SequenceFeatureTransformer
from sklearn_din._memory import _HUGE_PAGE_ADVICE_BYTES, empty_array
from sklearn_din.datasets import make_interactions

SMAPS = Path("/proc/self/smaps")
linux_only = pytest.mark.skipif(not (sys.platform.startswith("linux") and SMAPS.exists()),
                                reason="reads the kernel's page flags from /proc/self/smaps")


def vm_flags(array: np.ndarray) -> set[str]:
    """The VmFlags of the mapping that holds ``array``'s middle byte (numpy advises only
    the 2 MiB-aligned part of an allocation, a mapping of its own)."""
    address = array.__array_interface__["data"][0] + array.nbytes // 2
    inside = False
    for line in SMAPS.read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(part, 16) for part in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return set(line.split()[1:])
    raise AssertionError(f"no mapping holds address {address:#x}")


@pytest.mark.parametrize("shape", [(3, 5), (0, 7), (_HUGE_PAGE_ADVICE_BYTES // 4 + 1,),
                                   (2_000, 700)])
def test_empty_array_is_a_writable_c_array_of_the_shape(shape):
    array = empty_array(shape, np.int32)
    assert array.shape == shape and array.dtype == np.int32
    assert array.flags.c_contiguous and array.flags.writeable
    array.fill(7)
    assert (array == 7).all()


@linux_only
def test_large_arrays_skip_numpys_huge_page_advice():
    shape = (2_000, 700)  # 5.6 MB: above numpy's 4 MiB threshold
    ours = empty_array(shape, np.int32)
    assert "hg" not in vm_flags(ours)
    numpys = np.empty(shape, np.int32)
    if "hg" not in vm_flags(numpys):
        pytest.skip("this numpy does not advise huge pages (NUMPY_MADVISE_HUGEPAGE=0?)")


def test_views_keep_the_memory_and_pickles_copy_the_values():
    array = empty_array((2_000, 700), np.int32)
    array[:] = np.arange(700, dtype=np.int32)
    view = array[1_999, 10:20]
    del array
    gc.collect()
    np.testing.assert_array_equal(view, np.arange(10, 20))
    copied = pickle.loads(pickle.dumps(view))
    np.testing.assert_array_equal(copied, view)
    assert copied.flags.writeable


@linux_only
def test_no_memory_is_a_memory_error_as_from_numpy():
    # Under an address-space cap (RLIMIT_AS) the mapping fails with ENOMEM; callers that
    # handle numpy's MemoryError (tests/test_stream_memory.py) must see the same.
    import subprocess

    code = (
        "import resource, numpy as np\n"
        "from sklearn_din._memory import empty_array\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "vm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')][0]\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (64 << 20), hard))\n"
        "small = empty_array((1 << 20,), np.int32)\n"  # 4 MiB: fits
        "try:\n"
        "    empty_array((1 << 28,), np.int32)\n"  # 1 GiB: does not
        "except MemoryError as error:\n"
        "    print('MemoryError', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MemoryError Unable to allocate 1,024 MiB" in done.stdout
    assert "(268435456,) and data type int32" in done.stdout


@linux_only
def test_transform_output_block_is_in_ordinary_pages():
    log = make_interactions(n_users=1_000, n_items=300, n_categories=10, random_state=0)
    out = SequenceFeatureTransformer(max_len=50).fit_transform(log)
    block = out.to_numpy()  # the frame's single int32 block, not a copy
    assert block.nbytes >= _HUGE_PAGE_ADVICE_BYTES
    assert not block.flags.owndata
    assert "hg" not in vm_flags(block)
