"""The kernel against C: ours vs the naive numba loop vs two C references (our strategy, and lockstep), one run.

    .venv/bin/python bench/simd.py [--repeat 7] [--plot FILE.png] [--target native|avx2] [--no-cli] [--no-peak]

Every figure is pixel-iterations per second: the sum of the escape counts (the
iterations the rule performs) over wall time. All implementations run in this one
process (the CLI in subprocesses), interleaved round by round (A B C A B C ...),
and each figure is the median of ``--repeat`` rounds, so a neighbour's load hits
all of them alike; compare the ratios, not the absolute numbers.

1. One core, julia c = -0.8+0.156i, 1920x1080, max_iter 1000: (a) the naive numba
   loop of bench/kernel.py, (b) fractally.picture.kernel.escape_time, (b') its float32
   opt-in, and two C references, one thread each: (c) bench/c_refill.c, our strategy
   in C (vectors of four lanes, five in flight, escaped lanes frozen, each vector
   refilled when its four are done, every 8 steps) at the same instruction set as
   numba's code (AVX2 compare + blendv, or AVX-512VL masked adds where gcc's -march
   has AVX-512VL): the like-for-like reference, and the ratios' 1; (d)
   bench/c_kernel.c, AVX2 intrinsics with 16 pixels in lockstep until the last escapes.
2. Two cores, the same julia at 3840x2160: ours as the CLI runs it (256-pixel tiles
   on a ThreadPoolExecutor(2) through fractally.picture.compose.render_bands, no encoding) vs both
   C references with OpenMP on 2 threads; and the CLI's whole pipeline in this process
   (fractally.picture.compose.render_image_file to .msgpack or .png), free of the start-up's noise.
3. Through the CLI: ``fractally render`` in a subprocess on the 3840x2160 julia, writing
   .msgpack and .png, vs C on 2 threads: the render time the CLI prints (its clock starts after
   the imports and after numba has loaded the kernels: the fixed start-up), and, as a check,
   the process's wall time minus that of the same command on a 16x16 image.
4. The FP issue limit of this core (``--no-peak`` skips it): bench/c_peak.c measures the clock
   (dependent integer adds), which instructions share pipes, and the best rate of the rule's
   vector step; with the rule's instruction count per vector step this gives the most
   lane-steps a second the core can issue, and each kernel's one-core rate is reported as a
   share of it.

The C files are compiled here, into a temporary folder, with
``gcc -O3 -march=native -ffp-contract=off -fopenmp`` (no FMA, no fast-math: the same bits);
their assembly is checked for FMA (docs/api.md forbids it) and their counts must equal ours bit
for bit.

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
#: and what the images (Dockerfile) pin numba to.
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
    ap.add_argument("--no-peak", action="store_true", help="skip the FP issue limit probes (bench/c_peak.c)")
    args = ap.parse_args()
    if args.repeat < 5:
        ap.error("--repeat must be at least 5")
    if args.plot is None:
        args.plot = str(ROOT / "docs" / "kernel.png") if args.target == "native" else ""
    return args


# --------------------------------------------------------------------------- the C reference


def build_c(workdir: Path, march: str, name: str, symbol: str | None = None, openmp: bool = True):
    """Compile bench/``name`` into ``workdir`` with the references' flags and check its assembly for
    FMA (docs/api.md forbids it) and 256-bit multiplies; return the library and, if ``symbol`` is given,
    that escape-time function, typed for ctypes."""
    if shutil.which("gcc") is None:
        sys.exit("bench/simd.py needs gcc to build the C references (apt-get install gcc)")
    src = HERE / name
    flags = ["-O3", f"-march={march}", "-ffp-contract=off"] + (["-fopenmp"] if openmp else [])
    lib_path = workdir / f"lib{src.stem}.so"
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", str(src), "-o", str(lib_path)], check=True)
    asm_path = workdir / f"{src.stem}.s"
    subprocess.run(["gcc", *flags, "-S", str(src), "-o", str(asm_path)], check=True)
    asm = asm_path.read_text()
    assert not FMA.findall(asm), f"{name} contains FMA: {sorted(set(FMA.findall(asm)))}"
    assert re.search(r"vmulpd\s+%ymm", asm), f"{name} does not use 256-bit vectors"
    lib = ctypes.CDLL(str(lib_path))
    if symbol is None:
        return lib, " ".join(["gcc", *flags])
    fn = getattr(lib, symbol)
    d, i64 = ctypes.c_double, ctypes.c_int64
    fn.argtypes = [ctypes.c_int, d, d, d, d, d, i64, i64, i64, d, i64, i64, i64, i64, ctypes.c_void_p, ctypes.c_int]
    fn.restype = None
    return fn, " ".join(["gcc", *flags]), lib


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
    file, 30-40 ms of wall time for the 66 MB msgpack image (docs/benchmarks.md, "Kernel").
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


def draw_plot(rows: list[dict], path: Path, title: str, subtitle: str, reference: str) -> None:
    """Bars of each implementation's speed as a multiple of the C reference's (1 = C), with the
    quartiles of the per-round ratios as whiskers, one group per section. Drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=13)
    bold = ImageFont.load_default(size=18)
    colours = {"naive": (150, 150, 150), "ours": (32, 110, 180), "ours32": (120, 170, 220), "c": (225, 170, 120)}
    rows = [r for r in rows if "vs_c" in r]
    label_w, bar_w, row_h, left, top = 340, 560, 30, 20, 78
    sections = list(dict.fromkeys(r["section"] for r in rows))
    height = top + len(rows) * row_h + len(sections) * 30 + 64
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
    d.text((one - 4, top - 16), f"{reference} = 1", fill=(210, 110, 40), font=small, anchor="ra")
    d.text((left, y + 14), "speed (pixel-iterations per second) relative to the C reference on the same cores, "
           "median over interleaved rounds; whiskers: quartiles", fill=(80, 80, 80), font=small)
    d.text((left, y + 30), "the C references compute counts only; fractally also the smooth values",
           fill=(80, 80, 80), font=small)
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
    from fractally.picture.compose import render_bands, render_image_file
    from fractally.picture.kernel import escape_time, escape_time_float32
    from fractally.picture.spec import parse_spec

    malloc_like_our_processes()  # as `fractally render` (its CLI rows) does

    spec_mod = importlib.util.spec_from_file_location("bench_kernel", HERE / "kernel.py")
    bench_kernel = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(bench_kernel)
    naive_numba = bench_kernel.naive_numba

    small, large = parse_spec(SMALL), parse_spec(LARGE)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fractally-simd-") as tmp:
        tmp = Path(tmp)
        c_fn, c_flags, _ = build_c(tmp, march, "c_kernel.c", "escape_counts")
        r_fn, _, r_lib = build_c(tmp, march, "c_refill.c", "escape_counts_refill")
        r_lib.refill_isa.restype = ctypes.c_char_p
        refill_isa = r_lib.refill_isa().decode()

        # ---- buffers and the functions under test
        h, w = small.height, small.width
        naive_out = np.empty((h, w), np.uint32)
        ours_counts, ours_smooth = np.empty((h, w), np.uint32), np.empty((h, w), np.float32)
        f32_counts, f32_smooth = np.empty((h, w), np.uint32), np.empty((h, w), np.float32)
        c_small, r_small = np.empty((h, w), np.uint32), np.empty((h, w), np.uint32)
        c_large, r_large = (np.empty((large.height, large.width), np.uint32) for _ in range(2))
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
        c_counts(r_fn, small, 1, r_small)
        c_counts(r_fn, large, 2, r_large)
        assert np.array_equal(c_small, ours_counts), "C (lockstep) and fractally.picture.kernel disagree"
        assert np.array_equal(r_small, ours_counts), "C (refill) and fractally.picture.kernel disagree"
        assert np.array_equal(r_large, c_large), "the two C references disagree on 3840x2160"
        assert np.array_equal(naive_out, ours_counts), "the naive loop and fractally.picture.kernel disagree"
        assert np.array_equal(band_counts(tiles_out), c_large), "tiles on two threads disagree with C"
        work_small = float(ours_counts.sum(dtype=np.int64))
        work_f32 = float(f32_counts.sum(dtype=np.int64))
        work_large = float(c_large.sum(dtype=np.int64))

        # ---- 1 and 2: one core, two cores
        cpu1: dict[str, list[float]] = {}
        t1 = rounds({"naive": naive, "ours": ours, "ours32": ours32,
                     "c1": lambda: c_counts(c_fn, small, 1, c_small),
                     "r1": lambda: c_counts(r_fn, small, 1, r_small)}, args.repeat, cpu1)
        t2 = rounds({"ours2": ours_tiles, "pipe_msgpack": pipeline("msgpack"), "pipe_png": pipeline("png"),
                     "c2": lambda: c_counts(c_fn, large, 2, c_large),
                     "r2": lambda: c_counts(r_fn, large, 2, r_large)}, args.repeat)

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
            cli_runs["r2_cli"] = lambda: c_counts(r_fn, large, 2, r_large)
            tc = rounds(cli_runs, args.repeat)
            for fmt in ("msgpack", "png"):
                tc[f"own_{fmt}"] = reported[fmt]
        pool.shutdown()
        peak = None if args.no_peak else measure_peak(tmp, march)

    times = {**t1, **t2, **tc}
    if tc:  # the CLI's own work: each round's big render minus the same round's 16x16 start-up
        for name in ("msgpack", "png"):
            times[f"net_{name}"] = [big - tiny for big, tiny in zip(tc[f"cli_{name}"], tc[f"startup_{name}"])]
        times["cli_startup"] = [t for name in ("msgpack", "png") for t in tc[f"startup_{name}"]]
    med = {k: statistics.median(v) for k, v in times.items()}

    def ratios(key, work, ref_key, ref_work, clock):
        return sorted((work / t) / (ref_work / r) for t, r in zip(clock[key], clock[ref_key]))

    def row(section, name, kind, key, work, refs=None, ref_work=None):
        """One line of the table. ``refs``: {"refill": key, "lockstep": key} of the C references' runs
        in the same rounds; against each, the median over rounds of the rate ratio within a round."""
        r = {"section": section, "name": name, "kind": kind, "s": med[key], "rate": work / med[key], "vs": {}}
        for ref, ref_key in (refs or {}).items():
            if ref_key == key:
                continue
            q = ratios(key, work, ref_key, ref_work, times)
            r["vs"][ref] = statistics.median(q)
            if ref == "refill":  # the like-for-like reference: the plot's 1, with quartiles
                r["vs_c"], r["iqr"] = r["vs"][ref], (q[len(q) // 4], q[(3 * len(q)) // 4])
                if key in cpu1:
                    r["vs_c_cpu"] = statistics.median(ratios(key, work, ref_key, ref_work, cpu1))
        return r

    one, two, cli = "one core, 1920x1080", "two cores, 3840x2160", "through `fractally render`, 3840x2160, 2 cores"
    c_isa = "AVX-512VL" if refill_isa == "avx512vl" else "AVX2"
    refill_name, lockstep_name = f"C {c_isa}, refill as ours", "C AVX2, 16 lanes in lockstep"
    r1 = {"refill": "r1", "lockstep": "c1"}
    r2 = {"refill": "r2", "lockstep": "c2"}
    rows = [
        row(one, "naive numba loop", "naive", "naive", work_small, r1, work_small),
        row(one, "fractally kernel (float64, exact)", "ours", "ours", work_small, r1, work_small),
        row(one, "fractally kernel float32 (opt-in)", "ours32", "ours32", work_f32, r1, work_small),
        row(one, f"{lockstep_name}, 1 thread", "c", "c1", work_small, r1, work_small),
        row(one, f"{refill_name}, 1 thread", "ref", "r1", work_small, r1, work_small),
        row(two, "fractally, 256-px tiles, 2 threads", "ours", "ours2", work_large, r2, work_large),
        row(two, "  + encode and write .msgpack (CLI, in-process)", "ours", "pipe_msgpack", work_large, r2,
            work_large),
        row(two, "  + encode and write .png (CLI, in-process)", "ours", "pipe_png", work_large, r2, work_large),
        row(two, f"{lockstep_name}, OpenMP 2", "c", "c2", work_large, r2, work_large),
        row(two, f"{refill_name}, OpenMP 2", "ref", "r2", work_large, r2, work_large),
    ]
    if tc:
        rc = {"refill": "r2_cli", "lockstep": "c2_cli"}
        for fmt in ("msgpack", "png"):
            rows.append(row(cli, f"fractally render -o x.{fmt}, as it reports itself", "ours", f"own_{fmt}",
                            work_large, rc, work_large))
            rows.append(row(cli, f"  the same, wall minus a 16x16 run's", "ours", f"net_{fmt}", work_large,
                            rc, work_large))
        rows.append(row(cli, f"{lockstep_name}, OpenMP 2", "c", "c2_cli", work_large, rc, work_large))
        rows.append(row(cli, f"{refill_name}, OpenMP 2", "ref", "r2_cli", work_large, rc, work_large))

    # ---- report
    info = machine()
    naive_rate = rows[0]["rate"]
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info.get('simd', '?')}; "
          f"numba {numba.__version__} for {numba.config.CPU_NAME or 'host'} "
          f"({'AVX2 only' if args.target == 'avx2' else 'all its features'}); C: {c_flags}; "
          f"C refill reference compiled as {refill_isa}")
    print(f"work: {work_small:.4g} pixel-iterations (1920x1080), {work_large:.4g} (3840x2160); "
          f"{args.repeat} interleaved rounds; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("seconds and G pix-it/s: wall time, medians over the rounds; vs C: median over the rounds of the ratio"
          " within a round, against the C reference with our strategy (refill) and against the lockstep one;"
          " quartiles and CPU (from each run's thread CPU time, one core only) against the refill one")
    print(f"\n{'measurement':<50}{'seconds':>8}{'G pix-it/s':>11}{'vs refill':>10}{'quartiles':>12}{'CPU':>7}"
          f"{'vs lockstep':>12}{'vs naive':>9}")
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"-- {section}")
        vs_r = f"{r['vs']['refill']:.2f}x" if "refill" in r["vs"] else "1"
        vs_l = f"{r['vs']['lockstep']:.2f}x" if "lockstep" in r["vs"] else "1"
        iqr = f"{r['iqr'][0]:.2f}-{r['iqr'][1]:.2f}" if "iqr" in r else ""
        cpu = f"{r['vs_c_cpu']:.2f}x" if "vs_c_cpu" in r else ""
        print(f"   {r['name']:<47}{r['s']:>8.3f}{r['rate'] / 1e9:>11.3f}{vs_r:>10}{iqr:>12}{cpu:>7}{vs_l:>12}"
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
    share4 = lockstep_efficiency(ours_counts, 4)
    print(f"useful share of lane-steps on this view: vectors of 4 refilled as they finish (ours, C refill) "
          f"{share4:.2f}; 16 in lockstep (C lockstep) {lockstep_efficiency(ours_counts, 16):.2f}")
    if peak is not None:
        one_core = {name: work_small / statistics.median(cpu1[key])  # CPU time: the shared machine's load left out
                    for name, key in (("fractally kernel (float64)", "ours"), (lockstep_name, "c1"),
                                      (refill_name, "r1"))}
        report_peak(peak, one_core, share4, lockstep_efficiency(ours_counts, 16), lockstep_name)
    if args.plot:
        target = f"AVX2 code ({AVX2_TARGET})" if args.target == "avx2" else "native code"
        draw_plot(rows, Path(args.plot), f"Escape-time kernel: fractally vs C ({target})",
                  f"{info['cpu']}, {info['cores']} cores; julia c = -0.8+0.156i, max_iter 1000; "
                  f"bench/simd.py --repeat {args.repeat}", f"{refill_name} (same strategy, same ISA)")
        print(f"plot: {args.plot}")


# --------------------------------------------------------------------------- the FP issue limit

#: Zen 3's FP pipes as bench/c_peak.c's pipes_* probes find them on this machine (2026-12-03): multiplies
#: and blendv share two pipes (FP0/1), adds, subtracts and compares the other two (FP2/3); and/or go to
#: any of the four. Each pair of pipes issues two 256-bit instructions a cycle.
PIPE_OF = {"vmulpd": "mul", "vblendvpd": "mul", "vaddpd": "add", "vsubpd": "add", "vcmplepd": "add",
           "vcmpltpd": "add", "vcmppd": "add"}
#: The rule's FP instructions for one vector step: |z|² = x*x + y*y (2 mul, 1 add), the test (1 cmp),
#: x' = (x*x - y*y) + c.re (2 add), y' = (x + x)*y + c.im (1 add, 1 mul, 1 add).
RULE_OPS = {"mul": 3, "add": 6}
#: The same with x + x written as 2*x (the same bits): the best balance of the two pipe pairs.
RULE_OPS_BALANCED = {"mul": 4, "add": 5}

_HOT_LOOP = """
import collections, re, numpy as np
from fractally.picture import kernel
c, s = np.empty((64, 64), np.uint32), np.empty((64, 64), np.float32)
kernel.escape_time(True, -0.8, 0.156, 0.0, 0.0, 3.2, 64, 64, 100, 2.0, 0, 0, c, s)
asm = next(iter(kernel._iterate_strip.inspect_asm().values()))
blocks, cur = [], []
for line in asm.splitlines():
    if re.match(r"^\\.?\\w+:", line):
        blocks.append(cur); cur = []
    elif line.strip() and not line.strip().startswith((".", "#")):
        cur.append(line.split()[0])
blocks.append(cur)
hot = max(blocks, key=lambda b: b.count("vmulpd"))
print(dict(collections.Counter(hot)))
"""


def numba_hot_loop(workdir: Path) -> dict[str, int]:
    """The instructions of ``_iterate_strip``'s hot loop (five vector steps) as numba compiles it for this
    target: compiled afresh in a subprocess (a kernel loaded from numba's cache has no assembly to show)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(workdir / "asm-cache")}
    out = subprocess.run([sys.executable, "-c", _HOT_LOOP], env=env, cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    import ast

    return ast.literal_eval(out.strip().splitlines()[-1])


def best_rate(fn, args, work: float, repeat: int = 5) -> float:
    """The highest rate (work a CPU second of this thread) of ``repeat`` calls: a probe's limit, with
    the time a neighbour's process had the core left out (``time.thread_time``; no SMT on this VM)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        fn(*args)
        best = min(best, time.thread_time() - t0)
    return work / best


def measure_peak(workdir: Path, march: str) -> dict:
    """Run bench/c_peak.c's probes: the clock, the pipes, the rule's and our step's best issue rate."""
    lib, _ = build_c(workdir, march, "c_peak.c", openmp=False)
    i64, d = ctypes.c_int64, ctypes.c_double
    lib.clock_probe.argtypes = [i64, ctypes.POINTER(i64)]
    sink, dsink = i64(), d()
    n = 100_000_000
    clocks = [best_rate(lib.clock_probe, (n, ctypes.byref(sink)), 8 * n, 1) for _ in range(7)]
    hz = statistics.median(clocks)  # CPU time: a neighbour's load does not lower it, only the clock itself
    pipes = {}
    for name in ("add", "mul", "cmp", "blend", "add_mul", "add_cmp", "mul_cmp", "add_blend", "mul_blend"):
        fn = getattr(lib, f"pipes_{name}")
        fn.argtypes = [i64]
        pipes[name] = best_rate(fn, (5_000_000,), 24 * 5_000_000) / hz
    probes = {}
    for kind in ("rule", "best", "ours"):
        best = {}
        for v in (3, 4, 5, 8):
            fn = getattr(lib, f"{kind}_probe{v}")
            fn.argtypes = [i64, d, ctypes.POINTER(d)]
            m = 5_000_000
            best[v] = best_rate(fn, (m, 0.0, ctypes.byref(dsink)), 4 * v * m)
        probes[kind] = max(best.values())
    try:
        hot = numba_hot_loop(workdir)
    except subprocess.CalledProcessError as err:
        print(f"(could not read numba's hot loop: {err.stderr[-300:]})", file=sys.stderr)
        hot = {}
    return {"hz": hz, "clocks": clocks, "pipes": pipes, "probes": probes, "hot": hot}


def cycles_per_step(ops: dict[str, int], vectors: int = 1) -> float:
    """Cycles a vector step needs at least: each pipe pair issues two instructions a cycle."""
    return max(ops.get("mul", 0), ops.get("add", 0)) / 2 / vectors


def report_peak(peak: dict, one_core: dict[str, float], share4: float, share16: float, lockstep_name: str) -> None:
    hz = peak["hz"]
    print("\nFP issue limit of this core (bench/c_peak.c; each probe's best of 5 runs, in thread CPU time):")
    print(f"  clock: {hz / 1e9:.2f} GHz (8 dependent integer adds an iteration, 1 cycle each, over thread CPU time; "
          f"7 runs {min(peak['clocks']) / 1e9:.2f}-{max(peak['clocks']) / 1e9:.2f})")
    print("  256-bit instructions a cycle, alone and in pairs: "
          + ", ".join(f"{k.replace('_', '+')} {v:.2f}" for k, v in peak["pipes"].items()))
    print("  -> mul and blendv share two pipes, add/sub/cmp the other two (a pair of kinds that reaches 4 a cycle"
          " uses different pipes; one that stays at 2 shares them)")
    rule = cycles_per_step(RULE_OPS)
    balanced = cycles_per_step(RULE_OPS_BALANCED)
    limit = 4 / balanced * hz
    print(f"  the rule, one vector step of 4 float64 lanes: mul pipes {RULE_OPS['mul']} (x*x, y*y, (x+x)*y), "
          f"add pipes {RULE_OPS['add']} (x*x+y*y, compare, x*x-y*y, +c.re, x+x, +c.im): {rule:.1f} cycles; "
          f"with x+x as 2*x (same bits) {RULE_OPS_BALANCED['mul']} + {RULE_OPS_BALANCED['add']}: {balanced:.1f} cycles "
          f"(the count, as an integer, is not counted)")
    print(f"  FP issue limit = 4 lanes / {balanced:.1f} cycles x {hz / 1e9:.2f} GHz = {limit / 1e9:.2f} G lane-steps/s "
          f"a core. Probes (3-8 vectors, nothing data-dependent, best): the rule as written with a float count "
          f"(3 mul, 7 add-pipe: 3.5 cycles) {peak['probes']['rule'] / 1e9:.2f} G ({peak['probes']['rule'] / limit:.0%}); "
          f"balanced (2*x, integer count) {peak['probes']['best'] / 1e9:.2f} G ({peak['probes']['best'] / limit:.0%}); "
          f"our step in C intrinsics {peak['probes']['ours'] / 1e9:.2f} G ({peak['probes']['ours'] / limit:.0%})")
    hot = peak["hot"]
    if hot:
        pipes = {"mul": 0, "add": 0}
        for ins, count in hot.items():
            if ins in PIPE_OF:
                pipes[PIPE_OF[ins]] += count
        own = cycles_per_step(pipes, 5)
        print(f"  our hot loop as numba compiles it (5 vector steps): "
              + ", ".join(f"{k} {v}" for k, v in sorted(hot.items(), key=lambda kv: -kv[1]))
              + f" -> mul pipes {pipes['mul']}, add pipes {pipes['add']}: {own:.1f} cycles a vector step, at most "
              f"{4 / own * hz / 1e9:.2f} G lane-steps/s ({4 / own * hz / limit:.0%} of the limit)")
    print(f"  one core (rates from each run's thread CPU time, median), useful pixel-iterations/s as a share of the "
          f"FP issue limit ({limit / 1e9:.2f} G); lane-steps/s (useful / share of useful lane-steps) likewise:")
    for name, rate in one_core.items():
        share = share16 if name == lockstep_name else share4
        print(f"    {name:<40} {rate / 1e9:6.3f} G useful = {rate / limit:5.1%};  "
              f"{rate / share / 1e9:6.3f} G lane-steps = {rate / share / limit:5.1%}")


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
