"""Generated requests: schemathesis against the served OpenAPI document of ``fractally serve``.

Real HTTP on 127.0.0.1, the embedded service over a fresh folder. The ``schemathesis run`` CLI runs
all four phases (explicit examples, coverage of every boundary and negative value, random fuzzing,
stateful POST→GET sequences through the links it infers) with every check but
``positive_data_acceptance`` (why: tests/web/schemathesis.toml). Its HAR report is the record: how many
requests were sent, which statuses came back, and what every body said.

Bounded for CI: a fixed number of cases per operation and a fixed seed (so a red run can be
replayed), ~30 s on two cores; ``tests/web/schemathesis_hooks.py`` shrinks generated specs that would
be valid *and* expensive, so no gigapixel job eats the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.support.api import REPO_ROOT, running_server

pytestmark = pytest.mark.slow

MIN_REQUESTS = 1_000
MAX_EXAMPLES = 100  # per operation and phase; gives about 1,800 requests
SEED = 20261125
RUN_TIMEOUT = 240.0
LEAKS = ("Traceback", "/work/", "site-packages", '.py"', str(REPO_ROOT))


@pytest.fixture(scope="module")
def schemathesis_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run schemathesis once against a fresh server: its exit code, output and HAR entries."""
    pytest.importorskip("schemathesis")
    root = tmp_path_factory.mktemp("schemathesis")
    with running_server(root) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "SCHEMATHESIS_"))}
        env.update(SCHEMATHESIS_HOOKS="tests.web.schemathesis_hooks", NO_COLOR="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
        argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(REPO_ROOT / "tests" / "web" / "schemathesis.toml"),
                "run", f"{server.url}/openapi.json", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
                "--workers", "1", "--request-timeout", "30", "--report", "har",
                "--report-har-path", str(root / "requests.har")]
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        server_log = (root / "serve.err").read_text(errors="replace")
    har = json.loads((root / "requests.har").read_text())
    return {"code": proc.returncode, "output": proc.stdout + proc.stderr, "entries": har["log"]["entries"],
            "server_log": server_log}


def test_schemathesis_sends_at_least_a_thousand_requests(schemathesis_run):
    entries = schemathesis_run["entries"]
    statuses = Counter(e["response"]["status"] for e in entries)
    print(f"schemathesis: {len(entries)} requests; statuses {dict(sorted(statuses.items()))}")
    assert len(entries) >= MIN_REQUESTS, schemathesis_run["output"][-3000:]


def test_schemathesis_finds_no_failure_of_any_check(schemathesis_run):
    """Status codes, content types, headers and bodies conform to the document; bad data is refused."""
    assert schemathesis_run["code"] == 0, schemathesis_run["output"][-6000:]


def test_no_generated_request_gets_a_5xx(schemathesis_run):
    server_errors = [(e["request"]["method"], e["request"]["url"][:200], e["response"]["status"])
                     for e in schemathesis_run["entries"] if e["response"]["status"] >= 500]
    assert not server_errors


def test_no_response_to_a_generated_request_shows_internals(schemathesis_run):
    leaks = [(e["request"]["url"][:200], word) for e in schemathesis_run["entries"]
             for word in LEAKS if word in (e["response"]["content"].get("text") or "")]
    assert not leaks


def test_server_logged_no_unexpected_error(schemathesis_run):
    """An unexpected exception is answered 500 *and* logged with its trace: the log has none."""
    assert "Traceback" not in schemathesis_run["server_log"], schemathesis_run["server_log"][-3000:]
