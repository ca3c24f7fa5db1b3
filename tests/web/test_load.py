"""The load run, short: ``bench/load.py`` with 20 clients for 5 s against the stack, zero errors.

The full run (100 clients for 60 s) is ``.venv/bin/python bench/load.py``; its figures are in
docs/reliability.md. This one runs the same script as a subprocess, as a person would.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.api import REPO_ROOT
from tests.support.e2e import hermetic_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_load() -> dict:
    proc = subprocess.run([sys.executable, "bench/load.py", "--clients", "20", "--seconds", "5", "--json"],
                          cwd=REPO_ROOT, env=hermetic_env(), capture_output=True, text=True, timeout=240)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    result["exit_code"] = proc.returncode
    print(json.dumps(result, indent=1))
    return result


def test_short_load_run_has_no_errors(short_load):
    assert short_load["errors"] == 0, short_load["error_samples"]
    assert short_load["exit_code"] == 0


def test_short_load_run_sends_every_kind_of_request(short_load):
    kinds = short_load["kinds"]
    assert {"sync", "submit", "poll", "submit new", "submit repeat"} <= set(kinds)
    assert set(kinds) <= {"sync", "submit", "poll", "submit new", "submit repeat", "repeat, running", "repeat, done"}
    assert all(kinds[kind]["count"] >= 5 for kind in ("sync", "submit", "poll", "submit new"))


def test_short_load_run_reports_new_job_submits_apart_from_repeats(short_load):
    """Most submits of a load run find their job already there: their latencies are not a new job's."""
    kinds = short_load["kinds"]
    assert kinds["submit new"]["count"] + kinds["submit repeat"]["count"] == kinds["submit"]["count"]
    assert kinds["submit new"]["count"] == short_load["jobs"]["submitted_unique"]


def test_every_job_of_the_short_load_run_finishes(short_load):
    jobs = short_load["jobs"]
    assert jobs["submitted_unique"] >= 5
    assert jobs.get("done") == jobs["submitted_unique"] and jobs["unfinished"] == 0


def test_stack_survives_the_short_load_run(short_load):
    assert short_load["stack_alive"] is True
