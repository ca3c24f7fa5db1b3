"""What the benchmark scripts share: starting the embedded service, timing, job polling."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from fractally.ops.serving import running_server, serve_command

ROOT = Path(__file__).resolve().parent.parent
#: The server process behind each base URL that ``embedded_service`` yielded (for ``cpu_seconds``).
SERVERS: dict[str, subprocess.Popen] = {}


def malloc_like_our_processes() -> None:
    """Apply to this process the glibc settings our server and CLI apply (``fractally.malloc``).

    For the benches that render in-process (the bare kernel, the service's core): without them each
    tile's arrays went back to the kernel and were faulted in again, and the bare kernel ran about
    6 % slower than the same kernel inside the service, which flattered the service's ratios.
    """
    from fractally.malloc import keep_freed_memory

    keep_freed_memory()


@contextlib.contextmanager
def embedded_service(store_dir: str | Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``fractally serve`` on 127.0.0.1 (``fractally.ops.serving``, as the tests start it); yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as workdir, \
            running_server(Path(workdir), serve_command(), env=extra_env, store_root=Path(store_dir)) as server:
        SERVERS[server.url] = server.proc
        try:
            yield server.url
        finally:
            SERVERS.pop(server.url, None)


def run_job(base: str, spec: dict, poll: float = 0.02, timeout: float = 900.0) -> dict:
    """Submit ``spec`` and poll until it is done; returns the final status."""
    resp = requests.post(base + "/v1/renders", json=spec, timeout=30)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/v1/renders/{job_id}", timeout=30).json()
        if status["status"] in ("done", "failed"):
            if status["status"] == "failed":
                raise RuntimeError(f"job failed: {status.get('error')}")
            return status
        time.sleep(poll)
    raise TimeoutError(f"job {job_id} not done after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and all its descendants (Linux /proc), e.g.
    gunicorn's master and worker: a figure the other tenants of a shared machine do not move."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_job_in(base: str, store_dir: str | Path, spec: dict, timeout: float = 900.0) -> dict:
    """``run_job`` for timing: submit over HTTP, then watch the local store for the result object
    (a ``stat`` every 2 ms, nearly free) and confirm over HTTP once. Polling the status over HTTP
    every few ms costs the client and the server a few per cent of a core, which a timed job on
    every core pays for (the status is read off the same store objects)."""
    resp = requests.post(base + "/v1/renders", json=spec, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    folder = Path(store_dir, "jobs", body["id"])
    result, failed = folder / f"result.{body['spec']['format']}", folder / "failed.json"
    deadline = time.monotonic() + timeout
    while not (result.exists() or failed.exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {body['id']} not done after {timeout} s")
        time.sleep(0.002)
    status = requests.get(f"{base}/v1/renders/{body['id']}", timeout=30).json()
    if status["status"] != "done":
        raise RuntimeError(f"job {body['id']} is {status['status']}: {status.get('error')}")
    return status


def file_create_cost(folder: str | Path, files: int = 200) -> float:
    """CPU microseconds to create one empty file in a new subfolder of ``folder`` (the files stay,
    for whoever removes ``folder``: deleting them would itself slow later creations, see below).

    Printed by the store benches because on this VM it is not a constant: its ext4 has no journal,
    and there a new inode skips every inode freed in its block group in the last minute or more
    (ext4's ``recently_deleted`` check, one inode-table lookup each). A few minutes after a bulk
    delete (a test run, a previous bench's cleanup) creating a file costs 0.3-0.6 ms instead of
    ~0.02 ms, and a job's 256 tile files pay it.
    """
    sub = Path(tempfile.mkdtemp(prefix="create-cost-", dir=folder))
    c0 = time.process_time()
    for i in range(files):
        os.close(os.open(sub / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return (time.process_time() - c0) / files * 1e6


@contextlib.contextmanager
def fresh_store(stores: str | Path) -> Iterator[str]:
    """A new store folder under ``stores`` for one measured run, emptied afterwards (``empty_files``:
    not deleted, which would slow the next runs' file creation); ``stores`` goes at the end of the bench."""
    store = tempfile.mkdtemp(dir=stores)
    try:
        yield store
    finally:
        empty_files(store)


def empty_files(folder: str | Path) -> None:
    """Truncate every file under ``folder`` to nothing, keeping the files themselves.

    What a bench does with a run's store once it is measured. Its memory goes back to the kernel
    for the next run (kept, a few GB of stores made later runs write into memory this VM had not
    touched for a while, which costs more: the last view of bench/e2e.py ran 1.11x instead of
    1.05x), while its inodes stay allocated (freed, they would slow the next runs' file creation:
    ``file_create_cost``). The folder itself is removed at the end of the bench.
    """
    for parent, _, files in os.walk(folder):
        for name in files:
            os.truncate(os.path.join(parent, name), 0)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


#: Plot colours: our stack, anything else, and a target line.
OURS, OTHER, TARGET = "#1b5f93", "#9fb3d6", "#c0392b"


def plot_axes(panels: int = 1, width: float = 4.4, height: float = 3.6) -> tuple[Any, list[Any]]:
    """A figure with ``panels`` axes side by side, drawn off-screen (Agg) for ``--plot FILE.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    return fig, list(axes.flat)


def bar_panel(ax: Any, labels: list[str], values: list[float], *, unit: str = "s", fmt: str = "{:.2f}",
              ours: Callable[[str], bool] = lambda label: False, runs: list[list[float]] | None = None,
              missing: list[str] | None = None, target: float | None = None, target_label: str | None = None,
              title: str | None = None, ylabel: str | None = None, horizontal: bool = False) -> None:
    """Bars labelled with their value, every run as a dot on its bar when ``runs`` is given, and a
    dashed target line when ``target`` is. A ``nan`` value is drawn as no bar and its ``missing`` text
    (default "n/a")."""
    import math

    shown = [0.0 if math.isnan(v) else v for v in values]
    draw = ax.barh if horizontal else ax.bar
    draw(labels, shown, color=[OURS if ours(label) else OTHER for label in labels])
    for i, value in enumerate(values):
        points = list(runs[i]) if runs else []
        for p in points:  # every run, on its bar
            ax.plot(*((p, i) if horizontal else (i, p)), "o", color="black", markersize=2.5, alpha=0.6)
        text = ((missing[i] if missing else "n/a") if math.isnan(value)
                else fmt.format(value) + (f" {unit}" if unit else ""))
        top = max([shown[i], *points])  # above the bar and its dots
        ax.annotate(text, (top, i) if horizontal else (i, top), xytext=(3, 0) if horizontal else (0, 3),
                    textcoords="offset points", fontsize=7, ha="left" if horizontal else "center",
                    va="center" if horizontal else "bottom")
    if target is not None:  # a dashed line, named at its far end
        (ax.axvline if horizontal else ax.axhline)(target, color=TARGET, linestyle="--", linewidth=1)
        if target_label:
            where = ((target, 1.0), ("data", "axes fraction")) if horizontal else ((1.0, target),
                                                                                 ("axes fraction", "data"))
            ax.annotate(target_label, where[0], xycoords=where[1], xytext=(-3, 2), textcoords="offset points",
                        fontsize=7, color=TARGET, ha="right", va="bottom" if not horizontal else "top")
    if horizontal:
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.18)
    else:
        ax.margins(y=0.12)
    if title:
        ax.set_title(title, fontsize=9)
    if ylabel:
        (ax.set_xlabel if horizontal else ax.set_ylabel)(ylabel, fontsize=8)


def save_plot(fig: Any, path: str | Path, title: str) -> None:
    """Title, tighten and write the figure as a PNG; says where."""
    import textwrap

    import matplotlib.pyplot as plt

    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 13)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")
