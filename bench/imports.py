"""Import cost of every dependency on render_tile's cold-start path (``python -X importtime``).

bench/coldstart.py times the whole cold start (process start -> first tile served); this splits its
import part by package. Each run is a fresh interpreter that imports what the render_tile image
imports before its first tile is rendered: gunicorn and its gthread worker, the function's app
(Flask, fractally's core: spec, codec with msgpack, numpy and Pillow, the store, tasks) and
``fractally.picture.kernel`` (numba and llvmlite; imported lazily by the first tile). Every module's
*self* time is charged to its top-level package (the standard library as one line), so the rows
add up to the total and a package is not charged for what it imports from others. Median of
``--runs`` processes per package; the interpreter's own start (``python -c pass``) is shown apart.

    .venv/bin/python bench/imports.py [--runs 7] [--plot imports.png]

``--plot`` draws the packages' medians as bars (every run as a dot).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from common import ROOT, bar_panel, plot_axes, save_plot

PATH = ("gunicorn.app.wsgiapp", "gunicorn.workers.gthread", "functions.render_tile.app", "fractally.picture.kernel")
STDLIB = set(sys.stdlib_module_names) | {"_frozen_importlib", "_frozen_importlib_external", "encodings"}


def package_of(module: str) -> str:
    top = module.strip().split(".")[0]
    if top in STDLIB or top.startswith("_sysconfigdata") or top.startswith("_") and top[1:] in STDLIB:
        return "(standard library)"
    return "(editable install's finder)" if top.startswith("__editable__") else top


def one_run(statement: str) -> tuple[dict[str, float], dict[str, str], float]:
    """Self microseconds per package, who first imported each package, and the process's wall seconds."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    wall = time.perf_counter() - t0
    rows = []  # (depth, package, self us), children before their parent (importtime's order)
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((len(name) - len(name.lstrip()), package_of(name), int(self_us)))
    per: dict[str, float] = defaultdict(float)
    by: dict[str, str] = {}
    for i, (depth, package, self_us) in enumerate(rows):
        per[package] += self_us
        parent = next((p for d, p, _ in rows[i + 1:] if d < depth), "(the entry point)")
        if parent != package:
            by.setdefault(package, parent)
    return per, by, wall


def plot(runs: list[dict[str, float]], packages: list[str], total_ms: float, wall: float, bare: float,
         path: str) -> None:
    fig, (ax,) = plot_axes(1, width=6.4, height=0.5 + 0.26 * len(packages))
    per_run = [[r.get(p, 0) / 1e3 for r in runs] for p in packages]
    bar_panel(ax, packages, [statistics.median(v) for v in per_run], unit="ms", fmt="{:.1f}", runs=per_run,
              ours=lambda label: label in ("fractally", "functions"), horizontal=True,
              ylabel="ms of import time, the package's own modules (median)")
    save_plot(fig, path, f"Imports on render_tile's path: {total_ms:.0f} ms in all; the process takes {wall:.2f} s "
                         f"('python -c pass': {bare:.3f} s); median of {len(runs)} fresh processes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--plot", help="draw the per-package import times into this PNG")
    args = ap.parse_args()
    statement = "; ".join(f"import {m}" for m in PATH)
    runs, walls, bare = [], [], []
    for _ in range(args.runs):
        per, by, wall = one_run(statement)
        runs.append(per)
        walls.append(wall)
        bare.append(one_run("pass")[2])
    packages = sorted({p for per in runs for p in per}, key=lambda p: -statistics.median(r.get(p, 0) for r in runs))
    total = statistics.median(sum(per.values()) for per in runs) / 1e3
    print(f"imports on render_tile's path ({', '.join(PATH)}); median of {args.runs} fresh processes")
    print(f"{'package':28} {'ms':>8} {'share':>7}   first imported by")
    for p in packages:
        ms = statistics.median(r.get(p, 0) for r in runs) / 1e3
        if ms >= 0.5:
            print(f"{p:28} {ms:8.1f} {ms / total:7.1%}   {by.get(p, '')}")
    print(f"{'all imports':28} {total:8.1f}")
    print(f"process wall time: {statistics.median(walls):.3f} s with these imports, "
          f"{statistics.median(bare):.3f} s for 'python -c pass'")
    if args.plot:
        shown = [p for p in packages if statistics.median(r.get(p, 0) for r in runs) / 1e3 >= 0.5]
        plot(runs, shown, total, statistics.median(walls), statistics.median(bare), args.plot)


if __name__ == "__main__":
    main()
