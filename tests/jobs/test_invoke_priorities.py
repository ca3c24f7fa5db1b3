"""How the in-process invoker schedules its threads (docs/architecture.md principle 6: the API never waits on the CPU).

Render threads (each renders a tile and stores it) run under Linux's SCHED_IDLE (nice 19 where that is refused), the
assembler at nice 10, and every thread is started by the invoker itself: a thread inherits its
creator's scheduling, so a pool that started its threads on demand would hand a render thread's
SCHED_IDLE to whatever it submits to. Request threads keep the process's own priority.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from fractally.jobs.invoke import InProcessInvoker
from fractally.store import LocalStore

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")


def _scheduling() -> tuple[int, int]:
    """The calling thread's (policy, nice) -- both are per thread on Linux."""
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _idle_or_nice_19(policy_and_nice: tuple[int, int]) -> bool:
    policy, nice = policy_and_nice
    return policy == os.SCHED_IDLE or nice == 19


@pytest.fixture
def invoker(tmp_path: Path):
    invoker = InProcessInvoker(LocalStore(str(tmp_path / "store")), workers=2)
    yield invoker
    invoker.close()


def test_every_thread_is_started_up_front(invoker):
    assert len(invoker.tile_pool._threads) == 2
    assert len(invoker.assemble_pool._threads) == 1


def test_render_threads_yield_to_everything(invoker):
    seen = {invoker.tile_pool.submit(_scheduling).result() for _ in range(8)}
    assert all(_idle_or_nice_19(s) for s in seen), seen


def test_assembler_runs_below_requests_but_above_the_renderers(invoker):
    policy, nice = invoker.assemble_pool.submit(_scheduling).result()
    assert policy == os.SCHED_OTHER
    assert nice >= InProcessInvoker.HELPER_NICE


def test_a_thread_the_renderers_start_does_not_inherit_their_priority(invoker):
    """What a render thread submits (the assembly of a job whose tiles were all stored) runs on a
    thread that the invoker started."""
    def from_render_thread() -> tuple[int, int]:
        return invoker.assemble_pool.submit(_scheduling).result()

    policy, _ = invoker.tile_pool.submit(from_render_thread).result()
    assert policy == os.SCHED_OTHER


def test_the_callers_thread_keeps_its_priority(tmp_path):
    before = _scheduling()
    InProcessInvoker(LocalStore(str(tmp_path / "store")), workers=1).close()
    assert _scheduling() == before
