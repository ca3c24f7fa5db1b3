"""fractally/picture/warmup.py: long-running processes load their kernels up front and then keep the cyclic
garbage collector off everything loaded (a full collection over numba's objects held the GIL for
40-65 ms, and status polls waited for it); the embedded server's loader steps aside while a job runs."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from fractally.picture.warmup import WARM_SPECS, freeze_loaded_objects, warm
from functions.api import server
from functions.api.server import _warm_kernels


def test_freezing_takes_every_loaded_object_out_of_the_collectors_sight(unfrozen_gc):
    warm()
    frozen = freeze_loaded_objects()
    assert frozen > 10_000  # numba alone leaves far more than this
    assert len(gc.get_objects()) < frozen // 100  # what a full collection still walks


def test_the_embedded_servers_warm_up_freezes_what_it_loaded(unfrozen_gc):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    thread = threading.Thread(target=_warm_kernels)  # on its own thread, as the server runs it (it lowers its nice)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    assert gc.get_freeze_count() > 10_000


def test_warming_up_asks_before_every_kernel():
    asked = []
    warm(go_on=lambda: asked.append(len(asked)) is None)
    assert len(asked) > len(WARM_SPECS)  # each spec's kernel, and the colouring loop for the PNG ones


def test_warming_up_stops_when_told():
    asked = []
    warm(go_on=lambda: asked.append(len(asked)) is None and len(asked) < 2)
    assert len(asked) == 2  # the second answer was no: nothing more was asked or loaded


@dataclass
class LoaderWaits:
    """Each ``wait_until_idle`` call of the loader, seen by a spy around the invoker's real method: the
    timeout it was given, what it answered and whether the held job was still running when it did."""

    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[float, bool, bool]] = field(default_factory=list)


@pytest.fixture
def loader_waits(held_job: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> LoaderWaits:
    waits = LoaderWaits()
    invoker, real = held_job.invoker, held_job.invoker.wait_until_idle

    def spy(timeout: float, quiet: float = 0.0) -> bool:
        waits.entered.set()
        idle = real(timeout, quiet)
        waits.calls.append((timeout, idle, invoker.is_active(held_job.job.id)))
        return idle

    monkeypatch.setattr(invoker, "wait_until_idle", spy)
    return waits


def test_the_servers_loader_waits_while_a_job_runs(held_job, loader_waits, unfrozen_gc):
    """The loader asks to wait while the job is held, and is let go only once the job has ended."""
    thread = threading.Thread(target=_warm_kernels, args=(held_job.invoker,))
    thread.start()
    assert loader_waits.entered.wait(60)
    held_job.gate.set()
    thread.join(120)
    assert not thread.is_alive()
    assert loader_waits.calls and all(idle and not running for _, idle, running in loader_waits.calls)


def test_the_servers_loader_freezes_what_is_loaded_before_it_waits(held_job, loader_waits, unfrozen_gc):
    """Objects a job loaded meanwhile, or the loader before the job came, stay out of the full collections
    while the loader waits (each walked numba's objects for 40-65 ms holding the GIL)."""
    gc.unfreeze()
    thread = threading.Thread(target=_warm_kernels, args=(held_job.invoker,))
    thread.start()
    try:
        assert loader_waits.entered.wait(60)  # the loader's first wait, the job still held
        assert gc.get_freeze_count() > 10_000
    finally:
        held_job.gate.set()
        thread.join(120)


def test_the_servers_loader_gives_up_after_its_patience_in_all(held_job, loader_waits, unfrozen_gc, monkeypatch):
    """On a server that is never idle the loader stops early on, with what is loaded frozen: the patience
    is one budget for all its steps (seven here), not a wait per step: its one wait is given at most the
    patience, and once that wait ends with the job still running, no further step is waited for."""
    monkeypatch.setattr(server, "LOADER_PATIENCE", 1.0)
    gc.unfreeze()
    _warm_kernels(held_job.invoker)  # the job never ends while it runs
    assert [(idle, running) for _, idle, running in loader_waits.calls] == [(False, True)]
    assert loader_waits.calls[0][0] <= 1.0
    assert held_job.invoker.is_active(held_job.job.id)
    assert gc.get_freeze_count() > 10_000
