"""The kernel at the hardware's limit: ours vs the naive numba loop vs a C AVX2 reference, one run.

    .venv/bin/python bench/simd.py [--repeat 7] [--plot FILE.png] [--target native|avx2] [--no-cli]

Every figure is pixel-iterations per second: the sum of the escape counts (the
iterations the rule performs) over wall time. All implementations run in this one
process (the CLI in subprocesses), interleaved round by round (A B C A B C ...),
and each figure is the median of ``--repeat`` rounds, so a neighbour's load hits
all of them alike; compare the ratios, not the absolute numbers.

1. One core, julia c = -0.8+0.156i, 1920x1080, max_iter 1000: (a) the naive numba
   loop of bench/kernel.py, (b) fractally.kernel.escape_time, (b') its float32
   opt-in, (c) bench/c_kernel.c (AVX2 intrinsics, 16 pixels in flight), one thread.
2. Two cores, the same julia at 3840x2160: ours as the CLI runs it (256-pixel tiles
   on a ThreadPoolExecutor(2) through fractally.compose.render_bands, no encoding) vs C with
   OpenMP on 2 threads; and the CLI's whole pipeline in this process
   (fractally.compose.render_image_file to .msgpack or .png), free of the start-up's noise.
3. Through the CLI: ``fractally render`` in a subprocess on the 3840x2160 julia, writing
   .msgpack and .png, vs C on 2 threads: the render time the CLI prints (its clock starts after
   the imports and after numba has loaded the kernels: the fixed start-up), and, as a check,
   the process's wall time minus that of the same command on a 16x16 image.

The C kernel is compiled here, into a temporary folder, with
``gcc -O3 -march=native -ffp-contract=off -fopenmp``; its assembly is checked for
FMA (API.md forbids it) and its counts must equal ours bit for bit.

``--target avx2`` makes both compilers target the AVX2 level x86-64-v3 (numba:
NUMBA_CPU_NAME=x86-64-v3 with no extra features, as the function images pin it;
gcc: -march=x86-64-v3): the code an AVX2 machine gets, still run on this CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import itertools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FRACTALLY = Path(sys.executable).with_name("fractally")

#: The AVX2 level of x86-64 (Haswell and later, Zen 1 and later): what ``--target avx2`` compiles for,
#: and what functions/*/Dockerfile pin numba to.
AVX2_TARGET = "x86-64-v3"

JULIA = {"c": [-0.8, 0.156], "center": [0, 0], "scale": 3.2, "max_iter": 1000, "format": "msgpack"}
SMALL = {**JULIA, "width": 1920, "height": 1080}
LARGE = {**JULIA, "width": 3840, "height": 2160}
FMA = re.compile(r"\bv?f(?:n)?m(?:add|sub)\w*")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="rounds; each figure is the median (>= 5)")
    ap.add_argument("--plot", default=None,
                    help="bar chart to write ('' for none; default docs/kernel.png for the native target)")
    ap.add_argument("--target", choices=["native", "avx2"], default="native")
    ap.add_argument("--no-cli", action="store_true", help="skip the measurements through `fractally render`")
    args = ap.parse_args()
    if args.repeat < 5:
        ap.error("--repeat must be at least 5")
    if args.plot is None:
        args.plot = str(ROOT / "docs" / "kernel.png") if args.target == "native" else ""
    return args


# --------------------------------------------------------------------------- the C reference


def build_c_kernel(workdir: Path, march: str):
    """Compile bench/c_kernel.c into ``workdir``; check its assembly; return the ctypes function."""
    if shutil.which("gcc") is None:
        sys.exit("bench/simd.py needs gcc to build the C reference (apt-get install gcc)")
    src = HERE / "c_kernel.c"
    flags = ["-O3", f"-march={march}", "-ffp-contract=off", "-fopenmp"]
    lib = workdir / "libckernel.so"
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    asm_path = workdir / "c_kernel.s"
    subprocess.run(["gcc", *flags, "-S", str(src), "-o", str(asm_path)], check=True)
    asm = asm_path.read_text()
    assert not FMA.findall(asm), f"the C reference contains FMA: {sorted(set(FMA.findall(asm)))}"
    assert re.search(r"vmulpd\s+%ymm", asm), "the C reference does not use 256-bit vectors"
    fn = ctypes.CDLL(str(lib)).escape_counts
    d, i64 = ctypes.c_double, ctypes.c_int64
    fn.argtypes = [ctypes.c_int, d, d, d, d, d, i64, i64, i64, d, i64, i64, i64, i64, ctypes.c_void_p, ctypes.c_int]
    fn.restype = None
    return fn, " ".join(["gcc", *flags])


def c_counts(fn, spec, threads: int, out):
    """The C kernel's counts of the whole image into ``out`` (ctypes releases the GIL)."""
    c_re, c_im = spec.c if spec.c is not None else (0.0, 0.0)
    fn(int(spec.julia), c_re, c_im, spec.center[0], spec.center[1], spec.scale, spec.width, spec.height,
       spec.max_iter, spec.escape_radius, 0, 0, spec.height, spec.width, out.ctypes.data, threads)
    return out


# --------------------------------------------------------------------------- measuring


def rounds(fns: dict, repeat: int, cpu: dict | None = None) -> dict[str, list[float]]:
    """Run every function once per round, in turn (interleaved), ``repeat`` rounds; wall times.

    If ``cpu`` is given, it also gets each run's CPU time of the calling thread
    (``time.thread_time``): for single-threaded work that is the time the work
    itself took, without the waits while a neighbour's process had the core.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name in fns:
        if cpu is not None:
            cpu[name] = []
    for _ in range(repeat):
        for name, fn in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu[name].append(time.thread_time() - c0)
            discard_outputs()
    return times


def lockstep_efficiency(counts, lanes: int) -> float:
    """Useful fraction of lane-steps when groups of ``lanes`` neighbouring pixels run until the last escapes."""
    import numpy as np

    w = counts.shape[1] // lanes * lanes
    c = counts[:, :w].astype(np.int64)
    return float(c.sum() / (c.reshape(c.shape[0], -1, lanes).max(axis=2).sum() * lanes))


_WROTE = re.compile(r"^wrote .* in ([0-9.]+) s$", re.M)


_outputs = itertools.count()
_written: list[Path] = []


def new_output(folder: Path, fmt: str) -> Path:
    """A file name not used before in ``folder``; ``discard_outputs`` removes it after the run.

    Rendering over the previous run's file would time this VM's file system too: on ext4 an
    atomic replace (rename over an existing file, as ``fractally render`` does) makes the kernel
    allocate and start writing the new file's blocks at once (``auto_da_alloc``) and free the old
    file, 30-40 ms of wall time for the 66 MB msgpack image (docs/BENCHMARKS.md, "Kernel").
    """
    _written.append(folder / f"out-{next(_outputs)}.{fmt}")
    return _written[-1]


def discard_outputs() -> None:
    """Remove the files the runs so far wrote, between timed runs: left in place, their dirty pages
    (66 MB a msgpack run) pile up until the kernel's writeback threads write them out on the same
    two cores, in the middle of later runs."""
    while _written:
        _written.pop().unlink(missing_ok=True)


def cli_seconds(spec: dict, fmt: str, out_dir: Path) -> tuple[float, float]:
    """``fractally render`` for ``spec`` in a fresh process (all cores), into a new file: (wall time
    of the whole process, the render time it reports itself: after start-up, i.e. imports and
    kernel loading)."""
    cmd = [str(FRACTALLY), "render", f"--c={spec['c'][0]},{spec['c'][1]}", "--width", str(spec["width"]),
           "--height", str(spec["height"]), "--max-iter", str(spec["max_iter"]), "-o", str(new_output(out_dir, fmt))]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    return wall, float(_WROTE.search(done.stderr).group(1))


def machine() -> dict[str, str]:
    info = {"cpu": platform.processor() or platform.machine(), "cores": str(os.cpu_count())}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            if key.strip() == "Flags":
                flags = set(value.split())
                info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512vl") if f in flags)
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- the plot


def draw_plot(rows: list[dict], path: Path, title: str, subtitle: str) -> None:
    """Bars of each implementation's speed as a multiple of the C reference's (1 = C), with the
    quartiles of the per-round ratios as whiskers, one group per section. Drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=13)
    bold = ImageFont.load_default(size=18)
    colours = {"naive": (150, 150, 150), "ours": (32, 110, 180), "ours32": (120, 170, 220)}
    rows = [r for r in rows if "vs_c" in r]
    label_w, bar_w, row_h, left, top = 340, 560, 30, 20, 78
    sections = list(dict.fromkeys(r["section"] for r in rows))
    height = top + len(rows) * row_h + len(sections) * 30 + 48
    img = Image.new("RGB", (left + label_w + bar_w + 90, height), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 12), title, fill="black", font=bold)
    d.text((left, 40), subtitle, fill=(80, 80, 80), font=small)
    scale = bar_w / max(1.25, max(max(r["vs_c"], r["iqr"][1]) for r in rows) * 1.05)
    x0 = left + label_w
    y = top
    for section in sections:
        d.text((left, y + 6), section, fill="black", font=font)
        y += 30
        for r in (r for r in rows if r["section"] == section):
            d.text((left + 14, y + 6), r["name"], fill="black", font=font)
            end = x0 + max(1, round(scale * r["vs_c"]))
            d.rectangle([x0, y + 5, end, y + row_h - 5], fill=colours[r["kind"]])
            lo, hi = (x0 + round(scale * q) for q in r["iqr"])
            mid = y + row_h // 2
            d.line([lo, mid, hi, mid], fill="black", width=1)
            d.line([lo, mid - 4, lo, mid + 4], fill="black", width=1)
            d.line([hi, mid - 4, hi, mid + 4], fill="black", width=1)
            d.text((max(hi, end) + 8, y + 7), f"{r['vs_c']:.2f}x", fill="black", font=small)
            y += row_h
    one = x0 + round(scale)
    for yy in range(top, y, 6):  # the C reference, 1.0
        d.line([one, yy, one, yy + 3], fill=(210, 110, 40), width=2)
    d.text((one + 4, top - 16), "C AVX2 reference = 1", fill=(210, 110, 40), font=small)
    d.text((left, y + 14), "speed (pixel-iterations per second) relative to the C reference on the same cores, "
           "median over interleaved rounds; whiskers: quartiles", fill=(80, 80, 80), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    march = "native"
    if args.target == "avx2":  # before numba is imported: it reads these when it starts
        os.environ["NUMBA_CPU_NAME"] = AVX2_TARGET
        os.environ["NUMBA_CPU_FEATURES"] = ""
        march = AVX2_TARGET

    from concurrent.futures import ThreadPoolExecutor

    import numba
    import numpy as np

    from common import malloc_like_our_processes
    from fractally.compose import render_bands, render_image_file
    from fractally.kernel import escape_time, escape_time_float32
    from fractally.spec import parse_spec

    malloc_like_our_processes()  # as `fractally render` (its CLI rows) does

    spec_mod = importlib.util.spec_from_file_location("bench_kernel", HERE / "kernel.py")
    bench_kernel = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(bench_kernel)
    naive_numba = bench_kernel.naive_numba

    small, large = parse_spec(SMALL), parse_spec(LARGE)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fractally-simd-") as tmp:
        tmp = Path(tmp)
        c_fn, c_flags = build_c_kernel(tmp, march)

        # ---- buffers and the functions under test
        h, w = small.height, small.width
        naive_out = np.empty((h, w), np.uint32)
        ours_counts, ours_smooth = np.empty((h, w), np.uint32), np.empty((h, w), np.float32)
        f32_counts, f32_smooth = np.empty((h, w), np.uint32), np.empty((h, w), np.float32)
        c_small = np.empty((h, w), np.uint32)
        c_large = np.empty((large.height, large.width), np.uint32)
        kernel_args = (True, -0.8, 0.156, 0.0, 0.0, small.scale, w, h, small.max_iter, small.escape_radius, 0, 0)

        def naive():
            naive_numba(-0.8, 0.156, 0.0, 0.0, small.scale, w, h, small.max_iter, small.escape_radius ** 2, naive_out)

        def ours():
            escape_time(*kernel_args, ours_counts, ours_smooth)

        def ours32():
            escape_time_float32(*kernel_args, f32_counts, f32_smooth)

        pool = ThreadPoolExecutor(2)
        tiles_out: list = []

        def ours_tiles():  # what the CLI does, minus the encoding: 256-pixel tiles on two threads
            tiles_out[:] = list(render_bands(large, pool))

        specs = {fmt: parse_spec({**LARGE, "format": fmt}) for fmt in ("msgpack", "png")}

        def pipeline(fmt):  # what `fractally render` does after start-up: tiles on two threads, encode, write
            return lambda: render_image_file(specs[fmt], new_output(tmp, fmt), pool)

        # ---- warm up (compile), and check everything computes the same counts
        for fn in (naive, ours, ours32, ours_tiles, pipeline("msgpack"), pipeline("png")):
            fn()
        c_counts(c_fn, small, 1, c_small)
        c_counts(c_fn, large, 2, c_large)
        assert np.array_equal(c_small, ours_counts), "C and fractally.kernel disagree"
        assert np.array_equal(naive_out, ours_counts), "the naive loop and fractally.kernel disagree"
        assert np.array_equal(band_counts(tiles_out), c_large), "tiles on two threads disagree with C"
        work_small = float(ours_counts.sum(dtype=np.int64))
        work_f32 = float(f32_counts.sum(dtype=np.int64))
        work_large = float(c_large.sum(dtype=np.int64))

        # ---- 1 and 2: one core, two cores
        cpu1: dict[str, list[float]] = {}
        t1 = rounds({"naive": naive, "ours": ours, "ours32": ours32,
                     "c1": lambda: c_counts(c_fn, small, 1, c_small)}, args.repeat, cpu1)
        t2 = rounds({"ours2": ours_tiles, "pipe_msgpack": pipeline("msgpack"), "pipe_png": pipeline("png"),
                     "c2": lambda: c_counts(c_fn, large, 2, c_large)}, args.repeat)

        # ---- 3: through the CLI (each call a fresh process; start-up: the same command on a 16x16 image)
        tc: dict[str, list[float]] = {}
        if not args.no_cli:
            tiny = {**JULIA, "width": 16, "height": 16}
            for fmt in ("msgpack", "png"):  # warm the numba cache for the CLI's processes
                cli_seconds(LARGE, fmt, tmp)
            cli_runs, reported = {}, {"msgpack": [], "png": []}

            def big(fmt):
                wall, own = cli_seconds(LARGE, fmt, tmp)
                reported[fmt].append(own)
                return wall

            for fmt in ("msgpack", "png"):
                # each big render right before its own start-up run, so the pair sees the same load
                cli_runs[f"cli_{fmt}"] = lambda fmt=fmt: big(fmt)
                cli_runs[f"startup_{fmt}"] = lambda fmt=fmt: cli_seconds(tiny, fmt, tmp)[0]
            cli_runs["c2_cli"] = lambda: c_counts(c_fn, large, 2, c_large)
            tc = rounds(cli_runs, args.repeat)
            for fmt in ("msgpack", "png"):
                tc[f"own_{fmt}"] = reported[fmt]
        pool.shutdown()

    times = {**t1, **t2, **tc}
    if tc:  # the CLI's own work: each round's big render minus the same round's 16x16 start-up
        for name in ("msgpack", "png"):
            times[f"net_{name}"] = [big - tiny for big, tiny in zip(tc[f"cli_{name}"], tc[f"startup_{name}"])]
        times["cli_startup"] = [t for name in ("msgpack", "png") for t in tc[f"startup_{name}"]]
    med = {k: statistics.median(v) for k, v in times.items()}

    def row(section, name, kind, key, work, c_key=None, c_work=None):
        """One line of the table. ``vs C``: the median over rounds of the rate ratio within a round."""
        r = {"section": section, "name": name, "kind": kind, "s": med[key], "rate": work / med[key]}
        if c_key:
            ratios = sorted((work / t) / (c_work / c_t) for t, c_t in zip(times[key], times[c_key]))
            r["vs_c"] = statistics.median(ratios)
            r["iqr"] = (ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4])
            if key in cpu1:
                r["vs_c_cpu"] = statistics.median((work / t) / (c_work / c_t) for t, c_t in zip(cpu1[key], cpu1[c_key]))
        return r

    one, two, cli = "one core, 1920x1080", "two cores, 3840x2160", "through `fractally render`, 3840x2160, 2 cores"
    rows = [
        row(one, "naive numba loop", "naive", "naive", work_small, "c1", work_small),
        row(one, "fractally kernel (float64, exact)", "ours", "ours", work_small, "c1", work_small),
        row(one, "fractally kernel float32 (opt-in)", "ours32", "ours32", work_f32, "c1", work_small),
        row(one, "C AVX2 reference, 1 thread", "c", "c1", work_small),
        row(two, "fractally, 256-px tiles, 2 threads", "ours", "ours2", work_large, "c2", work_large),
        row(two, "  + encode and write .msgpack (CLI, in-process)", "ours", "pipe_msgpack", work_large, "c2",
            work_large),
        row(two, "  + encode and write .png (CLI, in-process)", "ours", "pipe_png", work_large, "c2", work_large),
        row(two, "C AVX2 reference, OpenMP 2 threads", "c", "c2", work_large),
    ]
    if tc:
        for fmt in ("msgpack", "png"):
            rows.append(row(cli, f"fractally render -o x.{fmt}, as it reports itself", "ours", f"own_{fmt}",
                            work_large, "c2_cli", work_large))
            rows.append(row(cli, f"  the same, wall minus a 16x16 run's", "ours", f"net_{fmt}", work_large,
                            "c2_cli", work_large))
        rows.append(row(cli, "C AVX2 reference, OpenMP 2 threads", "c", "c2_cli", work_large))

    # ---- report
    info = machine()
    naive_rate = rows[0]["rate"]
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info.get('simd', '?')}; "
          f"numba {numba.__version__} for {numba.config.CPU_NAME or 'host'} "
          f"({'AVX2 only' if args.target == 'avx2' else 'all its features'}); C: {c_flags}")
    print(f"work: {work_small:.4g} pixel-iterations (1920x1080), {work_large:.4g} (3840x2160); "
          f"{args.repeat} interleaved rounds; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("seconds and G pix-it/s: wall time, medians over the rounds; vs C: median over the rounds of the ratio"
          " within a round (quartiles); CPU: the same from each run's thread CPU time (one core only)")
    print(f"\n{'measurement':<50}{'seconds':>8}{'G pix-it/s':>11}{'vs C':>8}{'quartiles':>12}{'CPU':>7}"
          f"{'vs naive':>9}")
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"-- {section}")
        vs_c = f"{r['vs_c']:.2f}x" if "vs_c" in r else "1"
        iqr = f"{r['iqr'][0]:.2f}-{r['iqr'][1]:.2f}" if "iqr" in r else ""
        cpu = f"{r['vs_c_cpu']:.2f}x" if "vs_c_cpu" in r else ""
        print(f"   {r['name']:<47}{r['s']:>8.3f}{r['rate'] / 1e9:>11.3f}{vs_c:>8}{iqr:>12}{cpu:>7}"
              f"{r['rate'] / naive_rate:>8.2f}x")
    if tc:
        print(f"   (start-up: imports and numba loading the kernels, which the CLI does before its clock starts; "
              f"the same command on 16x16 right after each: median {med['cli_startup']:.3f} s, subtracted round by "
              f"round in the second row)")
    f32 = statistics.median((work_f32 / a) / (work_small / b) for a, b in zip(t1["ours32"], t1["ours"]))
    f32_cpu = statistics.median((work_f32 / a) / (work_small / b) for a, b in zip(cpu1["ours32"], cpu1["ours"]))
    print(f"\nfloat32 opt-in vs float64: {f32:.2f}x the pixel-iterations per second (median of per-round ratios; "
          f"CPU time {f32_cpu:.2f}x); "
          f"{np.mean(f32_counts != ours_counts):.1%} of its counts differ from the exact rule on this view")
    print(f"useful share of lane-steps on this view: vectors of 4 refilled as they finish (ours) "
          f"{lockstep_efficiency(ours_counts, 4):.2f}; 16 in lockstep (C) {lockstep_efficiency(ours_counts, 16):.2f}")
    if args.plot:
        target = f"AVX2 code ({AVX2_TARGET})" if args.target == "avx2" else "native code"
        draw_plot(rows, Path(args.plot), f"Escape-time kernel: fractally vs C AVX2 ({target})",
                  f"{info['cpu']}, {info['cores']} cores; julia c = -0.8+0.156i, max_iter 1000; "
                  f"bench/simd.py --repeat {args.repeat}")
        print(f"plot: {args.plot}")


def band_counts(bands) -> "np.ndarray":
    """The counts of a whole image from render_bands' output (bands of tiles, or joined bands)."""
    import numpy as np

    rows = []
    for band in bands:
        if isinstance(band, tuple):  # a joined band: (counts, smooth)
            rows.append(band[0])
        else:  # a list of (counts, smooth) tiles, left to right
            rows.append(np.hstack([part[0] for part in band]))
    return np.vstack(rows)


if __name__ == "__main__":
    main()
