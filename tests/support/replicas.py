"""Several apis over one store, as a cluster runs them behind a load balancer.

``replica_services``: ``make(store, lease_timeout) -> Service``, in-process services (in-process
invoker) over a store the test gives, closed at the end. ``replicas``: the multi-process stack
(``fractally.ops.stack.Stack``: a moto S3 server, render_tile with two gunicorn workers, assemble) plus
api replicas the test starts and kills, each a real ``gunicorn 'functions.api.app:create_app()'`` with
the HTTP invoker, as the stack starts its own api; ``own_pid_namespace=True`` starts one in a pid
namespace of its own (``unshare --pid --fork``), on the same hostname and network: as containers with
``--network host`` or Kubernetes pods with ``hostNetwork`` run.

The fixtures are in tests/jobs/conftest.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from fractally.ops.stack import Child, Stack, bound_socket, gunicorn_argv
from fractally.store import ObjectStore
from tests.support.e2e import STARTUP_TIMEOUT


def _unshare_prefix() -> list[str] | None:
    """How to start a process in a pid namespace of its own here (root, or user namespaces), if at all."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--pid", "--fork", "--kill-child"],
                   ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


@dataclass
class Replicas:
    """The functions and a store, and the api replicas a test starts over them."""

    stack: Stack
    logs: Path
    store: ObjectStore
    started: list[Child] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def start(self, name: str, lease_timeout: float, own_pid_namespace: bool = False) -> Child:
        """One more api over the stack's store and functions (as the stack's own api is configured)."""
        prefix: list[str] = []
        if own_pid_namespace:
            prefix = _unshare_prefix() or []
            if not prefix:
                pytest.skip("cannot start a process in a pid namespace of its own here (unshare)")
        api = next(c for c in self.stack.children if c.name == "api")
        sock = bound_socket()
        try:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            argv = [*prefix, *gunicorn_argv("functions.api.app:create_app()", sock.fileno(), threads=8)]
            env = {**api.env, "FRACTALLY_LEASE_TIMEOUT": str(lease_timeout), "FRACTALLY_PUBLIC_URL": url}
            child = Child(name, argv, env, url, log_path=self.logs / f"{name}.log", pass_fds=(sock.fileno(),),
                          cwd=api.cwd)
            self.started.append(child.start())
        finally:
            sock.close()
        child.wait_healthy(time.monotonic() + STARTUP_TIMEOUT)
        return child

    def status(self, replica: Child, job_id: str) -> dict[str, Any]:
        resp = self.session.get(f"{replica.url}/v1/renders/{job_id}", timeout=15)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def s3_puts(self) -> Counter[str]:
        """How often each key was PUT, from the S3 server's request log."""
        store: Any = self.store
        text = (self.logs / "s3.log").read_text(errors="replace")
        pattern = re.compile(rf'"PUT /{re.escape(store.bucket)}/{re.escape(store.prefix)}(\S+?)(?:\?\S*)? HTTP/')
        return Counter(pattern.findall(text))

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail(lines)}" for c in self.started)

    def stop_started(self) -> None:
        for child in self.started:
            child.stop(timeout=15)
        self.started = []


