"""The ``fractally`` command: render on this machine, or run the service's processes.

Each sub-command is a thin shell over the core (or the function apps); the
options spell the spec's fields with dashes (API.md, "Command line").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fractally.errors import FractallyError

FORMAT_BY_SUFFIX = {".png": "png", ".msgpack": "msgpack", ".mp": "msgpack"}


def _pair(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers separated by a comma, e.g. -0.8,0.156; got {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers, got {text!r}") from None


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fractal", choices=["julia", "mandelbrot"])
    p.add_argument("--c", type=_pair, metavar="RE,IM", help="Julia parameter, e.g. --c=-0.8,0.156")
    p.add_argument("--center", type=_pair, metavar="X,Y")
    p.add_argument("--scale", type=float)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--max-iter", type=int)
    p.add_argument("--escape-radius", type=float)
    p.add_argument("--tile-size", type=int)
    p.add_argument("--colormap")


def spec_from_args(args: argparse.Namespace, fmt: str) -> dict:
    fields = ("fractal", "c", "center", "scale", "width", "height", "max_iter", "escape_radius",
              "tile_size", "colormap")
    spec = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    spec["format"] = fmt
    if spec.get("fractal", "julia") == "julia" and "c" not in spec:
        spec["c"] = [-0.8, 0.156]
    return spec


def cmd_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fractally.compose import render_bands, write_image_file
    from fractally.spec import parse_spec
    from fractally.tiling import tile_count

    out = Path(args.output)
    fmt = FORMAT_BY_SUFFIX.get(out.suffix.lower())
    if fmt is None:
        raise FractallyError(f"the output file must end in .png or .msgpack, got {out.name!r}", "output")
    spec = parse_spec(spec_from_args(args, fmt))
    workers = args.workers or os.cpu_count() or 1
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tqdm(total=tile_count(spec), unit="tile", disable=args.quiet, file=sys.stderr,
              desc=f"{spec.width}x{spec.height}") as bar, ThreadPoolExecutor(workers) as pool:
        write_image_file(spec, render_bands(spec, pool, on_tile=lambda t: bar.update()), out)
    if not args.quiet:
        print(f"wrote {out} ({out.stat().st_size} bytes) in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fractally", description="Julia and Mandelbrot sets, rendered.")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render one image on this machine, all cores")
    _add_spec_options(render)
    render.add_argument("-o", "--output", required=True, help="FILE.png or FILE.msgpack")
    render.add_argument("--workers", type=int, default=0, help="threads (default: all cores)")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    render.set_defaults(func=cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FractallyError as err:
        where = f" ({err.field})" if err.field else ""
        print(f"fractally: error{where}: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
