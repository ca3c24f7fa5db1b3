"""Assembly claims (fractally/jobs/tasks.py): one assembler a job at a time; a claim whose holder died is
taken over (at once if the holder was on this host, after ``CLAIM_TIMEOUT`` without renewal if not),
a live assembler renews its claim for as long as it works, and no claim outlives its assembly."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from fractally import jobs
from fractally.jobs import tasks
from fractally.store import orphans
from fractally.store import LocalStore

HOST = orphans.HOST  # the hostname and this pid namespace


def _hold(store: LocalStore, job: jobs.Job, by: str, age: float = 0.0) -> None:
    body = {"by": by, "at": time.time() - age}
    store.put(jobs.claim_key(job.id), json.dumps(body).encode(), "application/json")


@pytest.mark.parametrize("holder, status", [("dead", "done"), ("live", "busy")])
def test_a_claim_of_this_host_is_taken_over_at_once_only_from_a_dead_holder(local_store, ready_job, dead_pid,
                                                                            holder, status):
    _hold(local_store, ready_job, f"{dead_pid if holder == 'dead' else os.getppid()}@{HOST}~run1")
    assert tasks.assemble(ready_job.id, local_store)["status"] == status


def test_a_claim_of_an_earlier_process_with_our_pid_is_taken_over_at_once(local_store, ready_job):
    _hold(local_store, ready_job, f"{os.getpid()}@{HOST}~an-earlier-run")  # pids repeat in restarted containers
    assert tasks.assemble(ready_job.id, local_store)["status"] == "done"


def test_a_claim_names_its_holder_as_its_temporary_files_do(local_store, ready_job):
    def ready(index: int) -> None:
        seen.append(json.loads(local_store.get(jobs.claim_key(ready_job.id)))["by"])

    seen: list[str] = []
    tasks.assemble(ready_job.id, local_store, ready=ready)
    assert seen and set(seen) == {orphans.owner()}
    assert orphans.temp_prefix("put-") == f"put-{orphans.owner()}~"


@pytest.mark.parametrize("age, status", [(0.0, "busy"), (tasks.CLAIM_TIMEOUT - 5, "busy"),
                                         (tasks.CLAIM_TIMEOUT + 1, "done")])
def test_a_claim_of_another_host_is_taken_over_once_it_went_unrenewed_for_the_timeout(local_store, ready_job,
                                                                                     age, status):
    _hold(local_store, ready_job, "12345@another-host~run1", age)
    assert tasks.assemble(ready_job.id, local_store)["status"] == status


def test_the_timeout_leaves_room_for_several_late_renewals():
    assert tasks.CLAIM_TIMEOUT >= 5 * tasks.CLAIM_RENEWAL


def renewal_running() -> bool:
    """Whether a claim-renewal thread is alive (``lease.Renewal.stop`` joins it, so after an assembly
    returns, none left means no renewal can come later)."""
    return any(t.name == "claim-renewal" and t.is_alive() for t in threading.enumerate())


def wait_for_a_new_claim(store: LocalStore, claim: str, seen: set[float], timeout: float = 5.0) -> None:
    """Block until the claim's time is one not in ``seen`` (a renewal since), then add it; bounded."""
    deadline = time.monotonic() + timeout
    while (at := json.loads(store.get(claim))["at"]) in seen and time.monotonic() < deadline:
        time.sleep(0.005)
    seen.add(at)


def test_a_long_assembly_renews_its_claim_and_leaves_none_behind(local_store, ready_job, monkeypatch):
    """Each band waits for a renewal it has not seen: the assembly lasts as long as renewals keep
    coming, and three distinct claim times show it renewed at least twice after taking the job."""
    monkeypatch.setattr(tasks, "CLAIM_RENEWAL", 0.02)
    claim = jobs.claim_key(ready_job.id)
    seen: set[float] = set()

    def ready_after_a_renewal(index: int) -> None:  # the tiles are stored; each band waits for a renewal
        wait_for_a_new_claim(local_store, claim, seen)

    result = tasks.assemble(ready_job.id, local_store, ready=ready_after_a_renewal)
    assert result["status"] == "done"
    assert len(seen) >= 3
    assert not local_store.exists(claim)
    assert not renewal_running()  # so no renewal can bring the deleted claim back


def test_a_failed_assembly_stops_renewing_and_deletes_its_claim(local_store, ready_job, monkeypatch):
    monkeypatch.setattr(tasks, "CLAIM_RENEWAL", 0.02)
    claim = jobs.claim_key(ready_job.id)
    seen: set[float] = set()

    def failing_ready(index: int) -> None:  # fails once the claim is being renewed
        wait_for_a_new_claim(local_store, claim, seen)
        wait_for_a_new_claim(local_store, claim, seen)
        raise RuntimeError("a tile will not come")

    with pytest.raises(RuntimeError):
        tasks.assemble(ready_job.id, local_store, ready=failing_ready)
    assert len(seen) == 2  # it was renewed before the failure
    assert not local_store.exists(claim)
    assert not renewal_running()


def test_a_forced_assembly_writes_no_claim(local_store, ready_job, monkeypatch):
    monkeypatch.setattr(tasks, "CLAIM_RENEWAL", 0.02)
    puts = []
    renewing: list[bool] = []
    real_put = local_store.put
    monkeypatch.setattr(local_store, "put", lambda key, *a, **k: puts.append(key) or real_put(key, *a, **k))
    answer = tasks.assemble(ready_job.id, local_store, force=True, ready=lambda index: renewing.append(renewal_running()))
    assert answer["status"] == "done"
    assert jobs.claim_key(ready_job.id) not in puts
    assert renewing and not any(renewing)  # no renewal thread ran while it assembled
