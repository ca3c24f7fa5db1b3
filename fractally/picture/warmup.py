"""Compile the numba kernels ahead of time, into numba's on-disk cache.

A function image runs ``python -m fractally.picture.warmup --verify`` at build time with
``NUMBA_CACHE_DIR`` set: the first run compiles every kernel for both fractals (a
tiny render of each) and the colouring loop (every signature, at its import), and
writes the cache; ``--verify`` then renders again in a
fresh process and fails unless every kernel was *loaded* from the cache, so an
image cannot ship a cache that a cold start would miss. ``fractally worker``
calls ``warm()`` before taking tasks, so no task pays for compilation.

numba finds a cached kernel by the source file's directory (absolute path) and
content, the Python version and the CPU (name and features, or ``NUMBA_CPU_NAME``
/ ``NUMBA_CPU_FEATURES`` if set), so the package must be installed at the same
path at build and at run time (a regular, non-editable install), and the
image pins the CPU target (see the Dockerfiles). numba also insists on a
*writable* cache directory even to read it, so images bake the cache into
``/opt/numba-cache`` and copy it to ``/tmp`` at start (docs/operations.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

#: One small view of each fractal, and one in the float32 opt-in (its own kernel, ``escape_time_float32``);
#: the same compiled kernel serves every spec of its precision.
WARM_SPECS = (
    {"fractal": "julia", "c": [-0.8, 0.156], "width": 16, "height": 16, "max_iter": 32, "tile_size": 16},
    {"fractal": "mandelbrot", "center": [-0.5, 0.0], "scale": 3.0, "width": 16, "height": 16,
     "max_iter": 32, "tile_size": 16},
    {"fractal": "julia", "c": [-0.8, 0.156], "width": 16, "height": 16, "max_iter": 32, "tile_size": 16,
     "precision": "float32"},
    # a deep view: the perturbation kernel (one compiled kernel for both fractals and every depth)
    {"fractal": "mandelbrot", "center": ["0", "1"], "scale": "1e-20", "width": 16, "height": 16,
     "max_iter": 32, "tile_size": 16},
)


def kernel_dispatchers() -> dict[str, Any]:
    """Every numba-compiled function of ``fractally.picture.kernel``, ``fractally.picture.perturb``,
    ``fractally.picture.bla``, ``fractally.picture.period``, ``fractally.picture.pairs`` and
    ``fractally.picture.colour_kernel``, by name."""
    from numba.core.registry import CPUDispatcher

    from fractally.picture import bla, colour_kernel, kernel, pairs, period, perturb

    return {f"{module.__name__}.{name}": obj for module in (kernel, perturb, bla, period, pairs, colour_kernel)
            for name, obj in vars(module).items() if isinstance(obj, CPUDispatcher)}


def load_for(spec: Any) -> None:
    """Load (or compile) what rendering ``spec`` runs: its kernel, and the colouring loop for a PNG.

    One pixel's work; the CLI calls it before its clock starts, so the time it reports is the
    render, not numba loading code (the fixed start-up, with the imports).
    """
    for step in _loading_steps(spec):
        step()


def _loading_steps(spec: Any) -> list[Callable[[], Any]]:
    """``load_for(spec)`` in the steps ``warm`` may wait between: the kernel, then (PNG) the colouring loop."""

    def kernel() -> tuple:
        from fractally.picture.tiling import Tile, render_tile_arrays

        return render_tile_arrays(spec, Tile(0, 0, 0, 0, 0, 1, 1))  # one pixel (a deep view: its orbit too)

    if spec.format != "png":
        return [kernel]

    def colour() -> None:
        from fractally.picture.colour import colourize

        colourize(*kernel(), spec.max_iter, spec.colormap)

    return [kernel, colour]


def warm(go_on: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Load every kernel (one pixel of each warm spec); report what numba loaded from its cache or compiled.

    ``go_on``, if given, is called before each step (a kernel, the colouring loop) and may wait; when
    it answers False the loading stops there, and what is not loaded yet is loaded by the first render
    that needs it. The embedded server's loader waits there while a job runs, so a job started during
    the loading does not share the cores and the GIL with it (docs/benchmarks.md, "Stack overhead").
    """
    from fractally.picture.spec import parse_spec

    started = time.perf_counter()
    steps = (step for raw in WARM_SPECS for step in _loading_steps(parse_spec(raw)))  # PNG: the colouring too
    for step in steps:
        if go_on is not None and not go_on():
            break
        step()
    hits = misses = 0
    for dispatcher in kernel_dispatchers().values():
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return {"cache_dir": os.environ.get("NUMBA_CACHE_DIR"), "loaded": hits, "compiled": misses,
            "seconds": round(time.perf_counter() - started, 3)}


def freeze_loaded_objects() -> int:
    """Move every object this process holds now out of the cyclic garbage collector's sight; return how many.

    For long-running processes, after ``warm()``. numba, llvmlite, Flask and the kernels leave some
    100 000 objects that live as long as the process, and every full collection walked all of them
    holding the GIL: 40-65 ms each, a few times a job, and a status poll that arrived meanwhile
    waited that long (docs/benchmarks.md, "Responsiveness"). Frozen, they are still freed by
    reference counting; only cycles among them would stay, and these are module-level objects that
    stay anyway. No collection first: after ``warm()`` it found 7 unreachable objects among 110 000
    and held the GIL for some 90 ms, where freezing takes microseconds; so it is cheap enough to call
    whenever more has been loaded.
    """
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fractally.picture.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="store_true",
                        help="afterwards, render again in a fresh process and fail unless nothing was compiled")
    args = parser.parse_args(argv)
    if not os.environ.get("NUMBA_CACHE_DIR"):
        print("warning: NUMBA_CACHE_DIR is not set; numba caches next to the sources", file=sys.stderr)
    print(json.dumps(warm()))
    if not args.verify:
        return 0
    out = subprocess.run([sys.executable, "-m", "fractally.picture.warmup"], check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"verify": report}))
    if report["compiled"] or not report["loaded"]:
        print("error: a fresh process compiled kernels instead of loading them from the cache", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
