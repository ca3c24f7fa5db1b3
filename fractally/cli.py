"""The ``fractally`` command: render on this machine, or run the service's processes.

Each sub-command is a thin shell over the core (or the function apps); the
options spell the spec's fields with dashes (docs/api.md, "Command line").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fractally.picture.decimals import DECIMAL
from fractally.errors import FractallyError
from fractally.malloc import keep_freed_memory

#: The functions ``fractally function`` serves (functions/serve.py; named as their images are).
FUNCTION_NAMES = ("api", "render-tile", "assemble")
FORMAT_BY_SUFFIX = {".png": "png", ".msgpack": "msgpack", ".mp": "msgpack"}


def _pair(text: str) -> list[str]:
    """RE,IM as given: decimal text of any length, read exactly by the spec (deep views need every digit)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(DECIMAL.fullmatch(p) for p in parts):
        raise argparse.ArgumentTypeError(f"expected two numbers separated by a comma, e.g. -0.8,0.156; got {text[:80]!r}")
    return parts


def _decimal(text: str) -> str:
    """A number as given (``--scale 1e-30``): the spec reads the text exactly."""
    if not DECIMAL.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a decimal number such as 1e-30, got {text[:80]!r}")
    return text.strip()


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fractal", choices=["julia", "mandelbrot"])
    p.add_argument("--c", type=_pair, metavar="RE,IM", help="Julia parameter, e.g. --c=-0.8,0.156")
    p.add_argument("--center", type=_pair, metavar="X,Y")
    p.add_argument("--scale", type=_decimal, help="view width; any number of digits, e.g. 1e-30 (a deep view)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--max-iter", type=int)
    p.add_argument("--escape-radius", type=float)
    p.add_argument("--tile-size", type=int)
    p.add_argument("--colormap")
    p.add_argument("--precision", choices=["float64", "float32"],
                   help="float64: docs/api.md's exact rule (default); float32: faster, allowed where visually safe")


def spec_from_args(args: argparse.Namespace, fmt: str) -> dict:
    fields = ("fractal", "c", "center", "scale", "width", "height", "max_iter", "escape_radius",
              "tile_size", "colormap", "precision")
    spec = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    spec["format"] = fmt
    if spec.get("fractal", "julia") == "julia" and "c" not in spec:
        spec["c"] = [-0.8, 0.156]
    return spec


def cmd_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fractally.picture.compose import render_image_file
    from fractally.picture.spec import parse_spec
    from fractally.picture.tiling import tile_count
    from fractally.picture.warmup import load_for

    out = Path(args.output)
    fmt = FORMAT_BY_SUFFIX.get(out.suffix.lower())
    if fmt is None:
        raise FractallyError(f"the output file must end in .png or .msgpack, got {out.name!r}", "output")
    spec = parse_spec(spec_from_args(args, fmt))
    workers = args.workers or os.cpu_count() or 1
    out.parent.mkdir(parents=True, exist_ok=True)
    load_for(spec)  # start-up: numba loads the kernels; the time printed below is the render alone
    started = time.perf_counter()
    with tqdm(total=tile_count(spec), unit="tile", disable=args.quiet, file=sys.stderr,
              desc=f"{spec.width}x{spec.height}") as bar, ThreadPoolExecutor(workers) as pool:
        render_image_file(spec, out, pool, on_tile=lambda t: bar.update())
    if not args.quiet:
        print(f"wrote {out} ({out.stat().st_size} bytes) in {time.perf_counter() - started:.3f} s", file=sys.stderr)
    print(out)
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    """The multi-process mode; fractally/ops/stack.py does the supervising."""
    from fractally.ops.stack import Stack, run_stack

    if args.render_workers < 0:
        raise FractallyError("--render-workers must be at least 1 (0: one per core)", "render_workers")
    return run_stack(Stack(port=args.port, render_workers=args.render_workers or None, store_url=args.store_url))


def cmd_serve(args: argparse.Namespace) -> int:
    """The embedded service (docs/api.md): the api, render_tile and assemble in one gunicorn process."""
    try:
        from functions.api.server import serve
    except ModuleNotFoundError as err:
        # Run from a source checkout: functions/ sits next to this package but is not installed.
        root = Path(__file__).resolve().parents[1]
        if err.name not in ("functions", "functions.api") or not (root / "functions" / "api" / "server.py").is_file():
            raise
        sys.path.insert(0, str(root))
        from functions.api.server import serve
    if args.workers_threads < 1:
        raise FractallyError("--workers-threads must be at least 1", "workers_threads")
    return serve(args.host, args.port, args.workers_threads)


def cmd_worker(args: argparse.Namespace) -> int:
    """The queue consumer (fractally/jobs/queue.py): render tile tasks from NATS JetStream until SIGTERM."""
    from fractally.config import Settings
    from fractally.jobs.queue import run_worker

    settings = Settings.from_env()
    health = (args.health_host, args.health_port) if args.health_port else None
    return run_worker(settings, args.concurrency or settings.workers, health)


def cmd_function(args: argparse.Namespace) -> int:
    """One function's server, as its image runs it (functions/serve.py)."""
    from functions.serve import run

    return run(args.name, args.host, args.port)


def cmd_image_check(args: argparse.Namespace) -> int:
    """Run at image build time: serving a request must load the baked kernels, not compile them."""
    from fractally.ops.imagecheck import check

    return check(args.name)


def cmd_create_bucket(args: argparse.Namespace) -> int:
    """The store's bucket, created if missing (a fresh MinIO; compose.yaml runs it once before the functions)."""
    from fractally.config import Settings
    from fractally.errors import StoreUnavailable

    store = Settings.from_env().open_store()
    create = getattr(store, "create_bucket", None)
    if create is None:
        print(f"{store.describe()} has no bucket to create")
        return 0
    deadline = time.monotonic() + args.wait
    while True:  # the S3 server may still be starting
        try:
            create()
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    print(f"bucket ready: {store.describe()}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Apply k8s/ with the kubernetes client and wait for the Knative Services (fractally/ops/deploy.py)."""
    from fractally.ops.deploy import deploy

    return deploy(args.manifests, context=args.context, timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from fractally.ops.deploy import status

    return status(args.manifests, context=args.context)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fractally", description="Julia and Mandelbrot sets, rendered.")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render one image on this machine, all cores")
    _add_spec_options(render)
    render.add_argument("-o", "--output", required=True, help="FILE.png or FILE.msgpack")
    render.add_argument("--workers", type=int, default=0, help="threads (default: all cores)")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    render.set_defaults(func=cmd_render)

    serve = sub.add_parser("serve", help="run the embedded service (api + workers, local-folder store)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    serve.add_argument("--workers-threads", type=int, default=32, metavar="N",
                       help="request threads of the one gunicorn worker (default: 32)")
    serve.set_defaults(func=cmd_serve)

    stack = sub.add_parser("stack", help="every function as its own server on loopback ports, with an S3 test server")
    stack.add_argument("--port", type=int, default=8080, help="the api's port (default 8080)")
    stack.add_argument("--render-workers", type=int, default=0, help="render_tile worker processes (default: one per core)")
    stack.add_argument("--store-url", help="use this store instead of a local S3 test server (S3 settings: FRACTALLY_S3_*)")
    stack.set_defaults(func=cmd_stack)

    worker = sub.add_parser("worker", help="consume tile tasks from NATS JetStream (FRACTALLY_INVOKER=queue)")
    worker.add_argument("--concurrency", type=int, default=0, help="tasks at once (default: FRACTALLY_WORKERS)")
    worker.add_argument("--health-port", type=int, default=0,
                        help="serve GET /healthz, /readyz, /_/health and /_/ready on this port (default: off)")
    worker.add_argument("--health-host", default="0.0.0.0", help="address for --health-port (default: 0.0.0.0)")
    worker.set_defaults(func=cmd_worker)

    # The images' command. HOST and PORT are the platform's (Knative sets PORT); the container tests
    # set HOST=127.0.0.1, as they run every container on the host's network.
    function = sub.add_parser("function", help="serve one function as its image does (api, render-tile, assemble)")
    function.add_argument("name", choices=FUNCTION_NAMES)
    function.add_argument("--host", default=os.environ.get("HOST") or "0.0.0.0",
                          help="address to listen on (default: $HOST, else 0.0.0.0)")
    function.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080),
                          help="port (default: $PORT, else 8080)")
    function.set_defaults(func=cmd_function)

    bucket = sub.add_parser("create-bucket", help="create the S3 bucket of FRACTALLY_STORE_URL if it does not exist")
    bucket.add_argument("--wait", type=float, default=60, help="seconds to keep trying while the S3 server starts")
    bucket.set_defaults(func=cmd_create_bucket)

    image_check = sub.add_parser("image-check", help="(image builds) fail if serving a request compiles a kernel")
    image_check.add_argument("name", choices=FUNCTION_NAMES)
    image_check.set_defaults(func=cmd_image_check)

    for name, func, text in (("deploy", cmd_deploy, "apply k8s/ to the current cluster and wait until it is ready"),
                             ("status", cmd_status, "show the readiness and URL of each Knative Service")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--manifests", default="k8s", help="the kustomization folder (default: k8s)")
        cmd.add_argument("--context", help="kubeconfig context (default: the current one)")
        if name == "deploy":
            cmd.add_argument("--timeout", type=float, default=600, help="seconds to wait for readiness (default 600)")
        cmd.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args)
    except FractallyError as err:
        where = f" ({err.field})" if err.field else ""
        print(f"fractally: error{where}: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
