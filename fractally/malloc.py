"""glibc malloc settings for processes that render: keep freed tile arrays for reuse.

Every tile allocates its counts and smooth arrays (256 KiB each at the default tile
size) and frees them a moment later, on several threads at once. glibc's defaults
hand such blocks back to the kernel (mmap/munmap above the mmap threshold, and
trimming the heap top above the trim threshold), so the next tile faults the same
memory in again: about 16,000 page faults and 0.04 s of system time per 3840x2160
render, and a tenth of `fractally render`'s wall time for msgpack output
(docs/benchmarks.md, "Kernel"). With blocks under 4 MiB served from the heap and up to
64 MiB of free heap kept, those faults go away; bigger buffers (bands of a large
image) still go straight back. The cost is at most that much idle heap per malloc
arena. Elsewhere than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 * 2**20
TRIM_THRESHOLD = 64 * 2**20


def keep_freed_memory() -> bool:
    """Apply the settings above to this process; True if glibc took them."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
