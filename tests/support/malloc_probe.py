"""Run one entry point in this fresh process, then show how glibc malloc now behaves (JSON on stdout).

``python -m tests.support.malloc_probe ENTRY [TMPDIR]`` with ENTRY one of ``none``, ``cli``, ``function_app``,
``api_app``. What it measures, with ``mallinfo2()``:

* ``mapped_3mib``: a 3 MiB block is mmapped (glibc's default threshold is 128 KiB, raised dynamically
  up to 32 MiB); with fractally.malloc's 4 MiB threshold it comes from the heap;
* ``mapped_4_5mib_after_5mib``: after a 5 MiB mmapped block is freed, a 4.5 MiB one is mmapped too.
  By default freeing the 5 MiB block raises the dynamic threshold past 4.5 MiB (heap); a threshold set
  with ``mallopt`` is fixed, so it stays mmapped;
* ``kept_mib``: free heap kept at the top after ten 3 MiB blocks are freed (``keepcost``): trimmed back
  to the kernel by default, kept below the 64 MiB trim threshold with the settings.
"""

from __future__ import annotations

import ctypes
import json
import sys
import tempfile
from pathlib import Path

MiB = 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


def probe() -> dict[str, object]:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def allocate(size: int) -> tuple[int, bool]:
        before = libc.mallinfo2().hblks
        block = libc.malloc(size)
        return block, libc.mallinfo2().hblks > before

    three, three_mapped = allocate(3 * MiB)
    five, _ = allocate(5 * MiB)
    libc.free(five)
    four_half, four_half_mapped = allocate(9 * MiB // 2)
    libc.free(three)
    libc.free(four_half)
    blocks = [libc.malloc(3 * MiB) for _ in range(10)]
    for block in blocks:
        libc.free(block)
    return {"mapped_3mib": three_mapped, "mapped_4_5mib_after_5mib": four_half_mapped,
            "kept_mib": libc.mallinfo2().keepcost // MiB}


def run_entry_point(entry: str, folder: Path) -> None:
    """Start ``entry`` the way a process of ours starts (no request served: only its setup matters)."""
    if entry == "cli":
        from fractally.cli import main

        assert main(["render", "--c=-0.8,0.156", "--width", "16", "--height", "16", "-q",
                     "-o", str(folder / "out.png")]) == 0
    elif entry == "function_app":
        from fractally.config import Settings
        from fractally.web import function_app

        function_app(__name__, lambda body, store: {}, Settings(store_url=str(folder / "store")))
    elif entry == "api_app":
        from fractally.config import Settings
        from functions.api.app import create_app

        create_app(Settings(store_url=str(folder / "store"), workers=1)).extensions["fractally"].service.close()
    elif entry != "none":
        raise SystemExit(f"unknown entry point {entry!r}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        run_entry_point(sys.argv[1], Path(tmp))
        print(json.dumps(probe()))
