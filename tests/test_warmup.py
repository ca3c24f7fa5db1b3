"""fractally/warmup.py: long-running processes load their kernels up front and then keep the cyclic
garbage collector off everything loaded (a full collection over numba's objects held the GIL for
40-65 ms, and status polls waited for it); the embedded server's loader steps aside while a job runs."""

from __future__ import annotations

import gc
import threading

from fractally.warmup import WARM_SPECS, freeze_loaded_objects, warm
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


def test_warming_up_can_pause_before_every_kernel():
    pauses = []
    warm(pause=lambda: pauses.append(len(pauses)))
    assert len(pauses) > len(WARM_SPECS)  # each spec's kernel, and the colouring loop for the PNG ones


def test_the_servers_loader_waits_while_a_job_runs(held_job, unfrozen_gc):
    gc.unfreeze()
    thread = threading.Thread(target=_warm_kernels, args=(held_job.invoker,))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and gc.get_freeze_count() == 0  # waiting for the job, before its first step
    held_job.gate.set()
    thread.join(120)
    assert not thread.is_alive()
    assert gc.get_freeze_count() > 10_000
