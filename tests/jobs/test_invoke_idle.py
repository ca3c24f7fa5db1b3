"""``Invoker.wait_until_idle``: background work (the embedded server's kernel loader) waits for a
moment without jobs, so it does not share the cores and the GIL with one."""

from __future__ import annotations

import time

from fractally.jobs.invoke import InProcessInvoker
from fractally.store import LocalStore


def test_an_invoker_that_never_ran_a_job_is_idle_at_once(tmp_path):
    invoker = InProcessInvoker(LocalStore(tmp_path / "store"), workers=1)
    try:
        assert invoker.wait_until_idle(0, quiet=60)
    finally:
        invoker.close()


def test_waiting_for_idle_gives_up_while_a_job_runs(held_job):
    started = time.monotonic()
    assert not held_job.invoker.wait_until_idle(0.3)
    assert time.monotonic() - started >= 0.3


def test_the_invoker_is_idle_once_its_job_has_ended(held_job):
    held_job.gate.set()
    assert held_job.invoker.wait_until_idle(60)
    assert not held_job.invoker.is_active(held_job.job.id)


def test_quiet_means_no_job_for_that_long(held_job):
    released = time.monotonic()  # the job ends after this
    held_job.gate.set()
    assert held_job.invoker.wait_until_idle(60)
    assert not held_job.invoker.wait_until_idle(0, quiet=30)  # the job ended a moment ago
    assert held_job.invoker.wait_until_idle(60, quiet=0.3)
    assert time.monotonic() - released >= 0.3
