"""The service over real HTTP, started as real processes, in both modes (fixtures: tests/web/conftest.py).

``embedded``: ``fractally serve`` (one process, in-process invoker, a local folder store),
started by ``tests.support.api.running_server``.
``stack``: ``fractally.ops.stack.Stack`` (an S3 test server, render_tile with 2 workers, assemble
and the api as separate gunicorn processes, HTTP invoker). ``deployment`` is parametrized
over both. Each starts once per module and is stopped by its finalizer; every process logs
to a file under the test's temporary folder, and a failed wait shows the log's end.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests

from fractally import jobs
from fractally.ops.stack import Stack
from fractally.store import LocalStore, ObjectStore

STARTUP_TIMEOUT = 90.0
JOB_TIMEOUT = 60.0
HTTP_TIMEOUT = 15.0


def hermetic_env() -> dict[str, str]:
    """This process's environment without FRACTALLY_* or AWS_* settings a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "AWS_"))}
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true")
    return env


@dataclass
class Deployment:
    """A running service as a client sees it, plus a look into its store."""

    mode: str  # "embedded" | "stack"
    api: str
    store: ObjectStore
    logs: list[Path] = field(default_factory=list)
    s3_log: Path | None = None  # the S3 test server's request log (stack mode)
    session: requests.Session = field(default_factory=requests.Session)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in self.logs:
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def submit(self, spec: Any) -> requests.Response:
        return self.session.post(self.api + "/v1/renders", json=spec, timeout=HTTP_TIMEOUT)

    def wait_done(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Poll until the job is done and its assembler has let go of it (the store is settled)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.session.get(f"{self.api}/v1/renders/{job_id}", timeout=HTTP_TIMEOUT).json()
            if body.get("status") == "failed":
                break
            if body.get("status") == "done" and not self.store.exists(jobs.claim_key(job_id)):
                return body
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {body}\n{self.log_tail()}")

    def object_versions(self, prefix: str) -> dict[str, Any]:
        """A token per object under ``prefix`` that changes whenever the object is written again.

        Local folder: inode and mtime (a write renames a new file into place). S3: ETag and
        LastModified, and the number of PUTs of the key in the S3 server's request log, since
        rewriting the same bytes within a second changes neither ETag nor LastModified.
        """
        if isinstance(self.store, LocalStore):
            return {key: ((st := (self.store.root / key).stat()).st_ino, st.st_mtime_ns)
                    for key in self.store.list(prefix)}
        store: Any = self.store
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket,
                                                                      Prefix=store.prefix + prefix)
        puts = self.s3_puts()
        versions = {obj["Key"]: (obj["ETag"], obj["LastModified"], puts[obj["Key"]])
                    for page in pages for obj in page.get("Contents", ())}
        assert all(v[2] >= 1 for v in versions.values()), "the S3 log shows no PUT of a stored object"
        return versions

    def s3_puts(self) -> Counter[str]:
        """How often each object key was PUT, read off the S3 server's request log."""
        assert self.s3_log is not None
        store: Any = self.store
        pattern = re.compile(rf'"PUT /{re.escape(store.bucket)}/(\S+?)(?:\?\S*)? HTTP/')
        return Counter(pattern.findall(self.s3_log.read_text(errors="replace")))


@contextlib.contextmanager
def running_stack(logs: Path) -> Iterator[Stack]:
    """``fractally.ops.stack.Stack`` with 2 render_tile workers over its own S3 test server, logging into ``logs``."""
    running = Stack(render_workers=2, log_dir=logs, base_env=hermetic_env(), startup_timeout=STARTUP_TIMEOUT)
    running.start()
    try:
        yield running
    finally:
        running.stop(timeout=15)


