"""tests/conftest.py's CI rule: with ``CI=true`` a skipped test fails the run unless ``CI_SKIP_ALLOWED``
names it. Each case runs pytest on a small suite of its own whose conftest takes the rule's hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI_SKIP_ALLOWED
from tests.support.api import REPO_ROOT

CONFTEST = """
from tests.conftest import pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish, \\
    pytest_terminal_summary  # noqa: F401
"""
ALLOWED_ID = next(iter(CI_SKIP_ALLOWED))


def run_suite(folder: Path, tests: str, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    """``pytest`` on ``tests`` (a module's text, placed where ``ALLOWED_ID`` would be) with CI set or unset."""
    module = folder / ALLOWED_ID.split("::")[0]
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(tests)
    (folder / "conftest.py").write_text(CONFTEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--rootdir", str(folder), *args, str(module)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


SKIPPING = "import pytest\n\ndef test_runs():\n    pass\n\ndef test_skips():\n    pytest.skip('no chromium')\n"


def test_a_skip_fails_a_ci_run_and_is_named(tmp_path: Path) -> None:
    done = run_suite(tmp_path, SKIPPING, "true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "::test_skips: Skipped: no chromium" in done.stdout


def test_a_skip_outside_ci_is_only_reported(tmp_path: Path) -> None:
    done = run_suite(tmp_path, SKIPPING, None)
    assert done.returncode == pytest.ExitCode.OK, done.stdout
    assert "1 passed, 1 skipped" in done.stdout


def test_a_skip_on_the_allow_list_passes_a_ci_run(tmp_path: Path) -> None:
    name = ALLOWED_ID.split("::")[1]
    done = run_suite(tmp_path, f"import pytest\n\ndef {name}():\n    pytest.skip('allowed')\n", "true")
    assert done.returncode == pytest.ExitCode.OK, done.stdout


def test_every_allowed_skip_says_why() -> None:
    assert all(len(reason.split()) >= 5 for reason in CI_SKIP_ALLOWED.values())
