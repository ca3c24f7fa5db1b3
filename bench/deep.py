"""Deep views (issue 19): agreement with exact counts, speed against float64, the reference orbit's cost.

    .venv/bin/python bench/deep.py                # everything (a few minutes)
    .venv/bin/python bench/deep.py --only agreement --samples 400

* agreement: views rendered by ``fractally.picture.perturb`` against mpmath iterating docs/api.md's rule on
  sampled pixels (``tests/support/reference.py``), at each depth, for views with detail at every depth
  (beside the Misiurewicz point c = i; at a repelling point of the julia set of -0.8+0.156i) and
  beside a deep minibrot (period 797, size 3e-599, found by Newton's method; counts 7,800 to 10,000, 11 % inside)
  and beside a shallower one in plain float64 (period 137, size 1e-102);
* speed: ``fractally render`` (the CLI, all cores) on a deep view against a float64 view of about
  the same pixel-iterations (the sum of the counts), the render time the CLI prints and the wall time;
  and fractalshades on the same mandelbrot views (``--fractalshades-python``: it lives in its own
  virtual environment, built against the system's MPFR);
* orbit: time and memory of the reference orbit against depth and max_iter (tracemalloc's peak while
  computing it, and the stored object's size);
* bla: time and memory of a BLA table along a whole orbit (``fractally.picture.bla``) against max_iter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fractally.picture import bla, orbit  # noqa: E402
from fractally.picture.period import view_orbits  # noqa: E402
from fractally.picture.skip import skip_for  # noqa: E402
from fractally.picture.spec import parse_spec  # noqa: E402
from fractally.picture.tiling import render_tile_arrays, tile  # noqa: E402
from tests.support.reference import exact_deep_count, minibrot_nucleus, moved_right  # noqa: E402

DEPTHS = ("1e-20", "1e-50", "1e-100", "1e-300", "1e-400")


def julia_point() -> list[str]:
    """-β, β = (1 + √(1 - 4c))/2 the repelling fixed point of z² + c, c = -0.8+0.156i: in the julia set."""
    import mpmath

    with mpmath.workdps(1_100):
        beta = (1 + mpmath.sqrt(1 - 4 * mpmath.mpc("-0.8", "0.156"))) / 2
        return [mpmath.nstr(-beta.real, 1_050, min_fixed=-2, max_fixed=2),
                mpmath.nstr(-beta.imag, 1_050, min_fixed=-2, max_fixed=2)]


def typical_view(fractal: str, depth: str) -> dict:
    """A view at ``depth`` beside c = i (mandelbrot) or at -β (julia): detail at every depth."""
    exponent = int(depth.split("e-")[1])
    if fractal == "mandelbrot":
        return {"fractal": "mandelbrot", "center": [f"3.1e-{exponent + 2}", f"1.{'0' * (exponent + 1)}7"],
                "scale": depth}
    return {"fractal": "julia", "c": ["-0.8", "0.156"], "center": julia_point(), "scale": depth}


MINIBROT_START = ("3.1e-302", "1." + "0" * 301 + "7")  # beside c = i, at the depth of the 1e-300 view


def minibrot_view() -> tuple[dict, int, float, list[str]]:
    """A view of the minibrot nearest ``MINIBROT_START`` and its surroundings: (view, period, log10 size,
    nucleus). The nucleus by ``tests.support.reference.minibrot_nucleus``; the view is 8 times its size, centred on it."""
    re_, im_, period, log_size = minibrot_nucleus(MINIBROT_START, 2_600)
    scale = f"{10 ** (log_size % 1) * 8:.2f}e{int(log_size // 1)}"
    return {"fractal": "mandelbrot", "center": [re_, im_], "scale": scale}, period, log_size, [re_, im_]


PLAIN_MINIBROT_START = ("3.1e-52", "1." + "0" * 51 + "7")  # beside c = i, at 1e-50


def plain_minibrot_view() -> tuple[dict, int]:
    """The period-137 minibrot (1e-102 wide) nearest ``PLAIN_MINIBROT_START``, 8 times its size: a deep view
    in plain float64 (not extended) whose pixels pass near 0 every period. (view, period)."""
    re_, im_, period, log_size = minibrot_nucleus(PLAIN_MINIBROT_START, 480)
    scale = f"{10 ** (log_size % 1) * 8:.2f}e{int(log_size // 1)}"
    return {"fractal": "mandelbrot", "center": [re_, im_], "scale": scale}, period


# --------------------------------------------------------------------------- agreement

def agreement(view: dict, samples: int, width: int = 256, height: int = 192, max_iter: int = 5_000) -> dict:
    spec = parse_spec({**view, "width": width, "height": height, "max_iter": max_iter, "tile_size": 256})
    started = time.perf_counter()
    counts, _ = render_tile_arrays(spec, tile(spec, 0))
    render = time.perf_counter() - started
    rng = np.random.default_rng(20261203)
    pixels = [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(samples)]
    started = time.perf_counter()
    exact = np.array([exact_deep_count(spec, i, j) for i, j in pixels])
    ours = np.array([counts[i, j] for i, j in pixels])
    return {"scale": spec.deep.scale, "fractal": spec.fractal, "samples": samples,
            "agree_pct": round(100.0 * float(np.mean(exact == ours)), 2),
            "off_by_more_than_1_pct": round(100.0 * float(np.mean(np.abs(exact - ours) > 1)), 2),
            "mean_count": round(float(np.mean(exact)), 1), "max_count": int(exact.max()),
            "inside_pct": round(100.0 * float(np.mean(exact >= max_iter)), 1),
            "skipped_steps": skipped_steps(spec),
            "render_s": round(render, 3), "exact_s": round(time.perf_counter() - started, 1)}


def skipped_steps(spec) -> int:
    """The steps every pixel of the view skips: the cubic series' in a plain view, the linear skip's in
    an extended one (``fractally.picture.skip``)."""
    from fractally.picture.perturb import scale_parts

    skip = skip_for(spec, view_orbits(spec)[0])
    return skip.m if scale_parts(spec)[2] else skip.series.m


# --------------------------------------------------------------------------- speed through the CLI

def _cli_args(view: dict) -> list[str]:
    args = ["--fractal", view["fractal"], f"--center={','.join(map(str, view['center']))}",
            "--scale", str(view["scale"])]
    if "c" in view:
        args.append(f"--c={','.join(map(str, view['c']))}")
    return args


def cli_render(view: dict, width: int, height: int, max_iter: int, rounds: int) -> dict:
    """Best of ``rounds`` runs of ``fractally render`` to msgpack: the render time it prints, and the wall time."""
    best_render = best_wall = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.msgpack"
        for _ in range(rounds):
            argv = [sys.executable, "-m", "fractally.cli", "render", *_cli_args(view), "--width", str(width),
                    "--height", str(height), "--max-iter", str(max_iter), "--tile-size", "256", "-o", str(out)]
            started = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
            best_wall = min(best_wall, time.perf_counter() - started)
            best_render = min(best_render, float(re.search(r" in ([0-9.]+) s", proc.stderr).group(1)))
            out.unlink()
    return {"render_s": round(best_render, 3), "wall_s": round(best_wall, 3)}


def pixel_iterations(view: dict, width: int, height: int, max_iter: int) -> int:
    spec = parse_spec({**view, "width": width, "height": height, "max_iter": max_iter, "tile_size": 4096})
    return int(render_tile_arrays(spec, tile(spec, 0))[0].astype(np.int64).sum())


def fractalshades(view: dict, width: int, height: int, max_iter: int, python: str) -> dict:
    """The same view by fractalshades (bench/deep_fractalshades.py under its own interpreter)."""
    argv = [python, str(ROOT / "bench" / "deep_fractalshades.py"), *map(str, view["center"]), str(view["scale"]),
            str(width), str(height), str(max_iter)]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp)
        wall = time.perf_counter() - started
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_wall_s": round(wall, 3)}


def speed(deep_view: dict, label: str, max_iter: int, rounds: int, fs_python: str | None) -> dict:
    """The deep view at 1024x768 against a float64 seahorse view cut to the same pixel-iterations."""
    width, height = 1024, 768
    deep_work = pixel_iterations(deep_view, width, height, max_iter)
    flat = {"fractal": "mandelbrot", "center": [-0.743643887037151, 0.131825904205330], "scale": 2e-9}
    flat_iter = 5_000
    per_row = pixel_iterations(flat, width, 768, flat_iter) / 768
    flat_height = max(16, min(8_192, round(deep_work / per_row)))
    flat_work = pixel_iterations(flat, width, flat_height, flat_iter)
    deep_t = cli_render(deep_view, width, height, max_iter, rounds)
    flat_t = cli_render(flat, width, flat_height, flat_iter, rounds)
    peer = None
    if fs_python and deep_view["fractal"] == "mandelbrot":
        peer = fractalshades(deep_view, width, height, max_iter, fs_python)
    return {"view": label, "fractalshades": peer, "deep_pixel_iterations": deep_work,
            "float64_pixel_iterations": flat_work,
            "float64_size": f"{width}x{flat_height}", "deep": deep_t, "float64": flat_t,
            "ratio_render": round(deep_t["render_s"] / flat_t["render_s"] * flat_work / deep_work, 2),
            "ratio_wall": round(deep_t["wall_s"] / flat_t["wall_s"] * flat_work / deep_work, 2),
            "cores": os.cpu_count()}


# --------------------------------------------------------------------------- reference orbit cost

def orbit_cost(nucleus: list[str], depth: str, max_iter: int) -> dict:
    """Time and peak memory of one reference orbit at a minibrot's nucleus (periodic: max_iter steps)."""
    spec = parse_spec({"fractal": "mandelbrot", "center": nucleus, "scale": depth, "width": 1024, "height": 768,
                       "max_iter": max_iter})
    inputs = orbit.inputs_for(spec)[0]
    tracemalloc.start()
    started = time.perf_counter()
    result = orbit.compute(inputs)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"scale": depth, "max_iter": max_iter, "bits": inputs.precision, "steps": len(result),
            "seconds": round(seconds, 3), "peak_mb": round(peak / 1e6, 2),
            "stored_mb": round(len(result.to_bytes()) / 1e6, 2)}


def table_cost(view: dict, label: str, max_iter: int) -> dict:
    """Build time of a BLA table along the view's whole orbit (median of 5, after a first build that loads
    numba's code) and the memory it holds (the arrays are all it allocates): the cost for a view not on a
    nucleus (one on it, as this one, is cut at its period: ``fractally.picture.period``)."""
    spec = parse_spec({**view, "width": 1024, "height": 768, "max_iter": max_iter})
    ref = orbit.orbits_for(spec)[0]
    bla.build(spec, ref)
    times = sorted(bla.build(spec, ref).seconds for _ in range(5))
    table = bla.build(spec, ref)
    jumps = [int(np.count_nonzero(table.rm[table.offsets[lv]:table.offsets[lv] + table.counts[lv]]))
             for lv in range(len(table.counts))]
    return {"view": label, "scale": view["scale"], "max_iter": max_iter, "steps": len(ref),
            "seconds": round(times[2], 4), "mb": round(table.nbytes / 1e6, 2), "levels": len(table.counts),
            "valid_entries_per_level": jumps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["agreement", "speed", "orbit", "bla"])
    parser.add_argument("--samples", type=int, default=200, help="pixels per view checked against mpmath")
    parser.add_argument("--rounds", type=int, default=3, help="CLI runs per view (the best counts)")
    parser.add_argument("--json", help="write the figures to this file too")
    parser.add_argument("--fractalshades-python", help="a Python with fractalshades installed: time it on the "
                        "mandelbrot views too (bench/deep_fractalshades.py)")
    args = parser.parse_args()
    figures: dict[str, list] = {}
    mini, period, log_size, nucleus = minibrot_view()
    print(f"minibrot: period {period}, size 1e{log_size:.1f}, scale {mini['scale']}", file=sys.stderr)
    if args.only in (None, "agreement"):
        rows = figures.setdefault("agreement", [])
        for fractal in ("mandelbrot", "julia"):
            for depth in DEPTHS:
                rows.append({"view": f"typical {fractal}", **agreement(typical_view(fractal, depth), args.samples)})
                print(json.dumps(rows[-1]), file=sys.stderr)
        plain, plain_period = plain_minibrot_view()
        for label, view in ((f"beside a period-{plain_period} minibrot", plain),
                            (f"beside a period-{plain_period} minibrot, a tenth of the view off its nucleus",
                             moved_right(plain)),
                            (f"beside a period-{period} minibrot", mini)):
            rows.append({"view": label, **agreement(view, args.samples, max_iter=20_000)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.only in (None, "speed"):
        plain, plain_period = plain_minibrot_view()
        rows = figures.setdefault("speed", [])
        for label, view, max_iter in (("typical mandelbrot 1e-30", typical_view("mandelbrot", "1e-30"), 5_000),
                                      ("typical mandelbrot 1e-100", typical_view("mandelbrot", "1e-100"), 5_000),
                                      ("typical mandelbrot 1e-300", typical_view("mandelbrot", "1e-300"), 5_000),
                                      ("typical julia 1e-100", typical_view("julia", "1e-100"), 5_000),
                                      (f"minibrot p{plain_period}", plain, 20_000),
                                      (f"minibrot p{plain_period}, a tenth off its nucleus", moved_right(plain), 20_000),
                                      (f"minibrot p{period}", mini, 20_000)):
            rows.append(speed(view, label, max_iter, args.rounds, args.fractalshades_python))
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.only in (None, "orbit"):
        rows = figures.setdefault("orbit", [])
        for depth in ("1e-20", "1e-100", "1e-300", "1e-1000"):
            for max_iter in (1_000, 10_000, 50_000):
                rows.append(orbit_cost(nucleus, depth, max_iter))
                print(json.dumps(rows[-1]), file=sys.stderr)
    if args.only in (None, "bla"):
        rows = figures.setdefault("bla", [])
        for max_iter in (1_000, 10_000, 50_000):
            rows.append(table_cost(mini, f"minibrot p{period}", max_iter))
            print(json.dumps(rows[-1]), file=sys.stderr)
        deepest = {"fractal": "mandelbrot", "center": nucleus, "scale": "1e-1000"}
        rows.append(table_cost(deepest, "minibrot nucleus", 50_000))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
