"""A model of the embedded service's threads: how long a request thread waits for the GIL.

Two SCHED_IDLE "render" threads run a nogil numba loop (~2 ms, like a tile) and then ~100 us of
Python; tile writes (393 KB files: a 256² tile's bytes) happen either on two more SCHED_IDLE
"writer" threads (``--writes separate``: the old invoker), in the render threads themselves
(``merged``: the invoker now) or not at all (``none``). The main thread, at normal priority like a
request thread, sleeps 3 ms a thousand times and reports how late it gets going again (it needs the
GIL to return from the sleep). docs/benchmarks.md, "Responsiveness", quotes it.

    .venv/bin/python bench/gil_model.py [--writes separate|merged|none] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import numpy as np
from numba import njit

from common import percentile


@njit(nogil=True)
def spin(n: int) -> float:
    x = 0.0
    for _ in range(n):
        x = x * 0.999999 + 1.0
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", choices=["separate", "merged", "none"], default="separate")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the model writes its files")
    args = ap.parse_args()
    spin(10)  # compile
    stop = threading.Event()
    tile = np.zeros(256 * 256 * 6 // 8)  # a 256² tile's 393 KB
    folder = tempfile.mkdtemp(prefix="gil-model-", dir=args.dir)

    def idle() -> None:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))

    def write(name: str) -> None:
        data = b"".join([b"header", memoryview(tile).cast("B")])
        fd = os.open(name + ".tmp", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.close(fd)
        os.replace(name + ".tmp", name)

    def render(k: int) -> None:
        idle()
        for i in range(10**9):
            if stop.is_set():
                return
            spin(2_000_000)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 100e-6:
                pass
            if args.writes == "merged":
                write(f"{folder}/r{k}-{i}")

    def writer(k: int) -> None:
        idle()
        for i in range(10**9):
            if stop.is_set():
                return
            write(f"{folder}/w{k}-{i}")
            time.sleep(0.002)

    threads = [threading.Thread(target=render, args=(k,)) for k in range(2)]
    if args.writes == "separate":
        threads += [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    late = []
    for _ in range(1000):
        t0 = time.perf_counter()
        time.sleep(0.003)
        late.append((time.perf_counter() - t0 - 0.003) * 1e3)
    stop.set()
    for t in threads:
        t.join()
    print(f"writes {args.writes}: a 3 ms sleep ends late by p50 {percentile(late, 50):.2f} ms, "
          f"p99 {percentile(late, 99):.2f} ms, max {max(late):.2f} ms (files in {folder})")


if __name__ == "__main__":
    main()
