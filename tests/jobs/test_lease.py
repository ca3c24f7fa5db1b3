"""fractally/jobs/lease.py: the one lease mechanism behind assembly claims and dispatch leases. A lease is
taken when absent or no longer live, renewed only by its holder, taken over once unrenewed for the
timeout or at once when its process is seen dead, and released only by its holder."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from fractally.jobs import lease
from fractally.store import orphans

KEY = "jobs/" + "0" * 32 + "/dispatch.lease"
TIMEOUT = 30.0


def _put(store, by: str, holder: str = "theirs", age: float = 0.0) -> None:
    store.put(KEY, json.dumps({"by": by, "holder": holder, "at": time.time() - age}).encode())


def _held(store) -> lease.Held:
    held = lease.read(store, KEY)
    assert held is not None
    return held


def test_an_absent_lease_is_taken(local_store):
    assert lease.take(local_store, KEY, "ours", TIMEOUT)
    held = _held(local_store)
    assert (held.by, held.holder) == (orphans.owner(), "ours") and time.time() - held.at < 5


def test_a_live_lease_of_another_holder_is_not_taken(local_store):
    _put(local_store, f"{os.getppid()}@{orphans.HOST}~run1")
    assert not lease.take(local_store, KEY, "ours", TIMEOUT)
    assert _held(local_store).holder == "theirs"


def test_a_holder_takes_its_own_lease_again(local_store):
    """What a release that failed (the store was away) left behind is no obstacle to its holder."""
    _put(local_store, orphans.owner(), holder="ours")
    assert lease.take(local_store, KEY, "ours", TIMEOUT)


@pytest.mark.parametrize("age, taken", [(TIMEOUT - 5, False), (TIMEOUT + 1, True)])
def test_a_lease_is_taken_over_once_unrenewed_for_the_timeout(local_store, age, taken):
    _put(local_store, "12345@another-host~run1", age=age)
    assert lease.take(local_store, KEY, "ours", TIMEOUT) is taken
    assert _held(local_store).holder == ("ours" if taken else "theirs")


def test_a_lease_whose_process_is_dead_is_taken_over_at_once(local_store, dead_pid):
    _put(local_store, f"{dead_pid}@{orphans.HOST}~run1")
    assert lease.take(local_store, KEY, "ours", TIMEOUT)


def test_a_dead_pid_in_another_pid_namespace_of_this_host_holds_its_lease_until_the_timeout(local_store, dead_pid):
    """Containers on the host's network share its hostname, not its pids: such a holder may be alive."""
    _put(local_store, f"{dead_pid}@{orphans.HOST}0~run1")  # the same hostname, another namespace
    assert not lease.take(local_store, KEY, "ours", TIMEOUT)


def test_an_unreadable_lease_is_taken_over(local_store):
    local_store.put(KEY, b"not json")
    assert lease.take(local_store, KEY, "ours", TIMEOUT)


def test_renewing_moves_the_lease_time_on(local_store):
    _put(local_store, orphans.owner(), holder="ours", age=10)
    assert lease.renew(local_store, KEY, "ours")
    assert time.time() - _held(local_store).at < 5


def test_a_lease_taken_over_is_not_renewed_by_its_former_holder(local_store):
    _put(local_store, "12345@another-host~run1", age=10)
    assert not lease.renew(local_store, KEY, "ours")
    assert _held(local_store).holder == "theirs" and time.time() - _held(local_store).at > 5


@pytest.mark.parametrize("holder, kept", [("ours", False), ("theirs", True)])
def test_release_deletes_only_the_holders_own_lease(local_store, holder, kept):
    _put(local_store, orphans.owner(), holder=holder)
    lease.release(local_store, KEY, "ours")
    assert local_store.exists(KEY) is kept


def test_a_renewal_thread_renews_its_leases_until_each_is_discarded(local_store):
    other = KEY.replace("dispatch", "other")
    renewal = lease.Renewal(local_store, 0.05, name="test-renewal")
    try:
        for key in (KEY, other):
            assert lease.take(local_store, key, "ours", TIMEOUT)
            renewal.add(key, "ours")
        first = {key: _at(local_store, key) for key in (KEY, other)}
        time.sleep(0.3)
        assert all(_at(local_store, key) > first[key] for key in (KEY, other))
        renewal.discard(other)
        lease.release(local_store, other, "ours")
        time.sleep(0.3)
        assert not local_store.exists(other)  # no renewal brought it back
        assert time.time() - _at(local_store, KEY) < 0.3
    finally:
        assert renewal.stop() == {KEY: "ours"}
    assert not any(t.name == "test-renewal" for t in threading.enumerate())


def test_a_renewal_thread_lets_go_of_a_lease_taken_over(local_store):
    renewal = lease.Renewal(local_store, 0.05)
    try:
        assert lease.take(local_store, KEY, "ours", TIMEOUT)
        renewal.add(KEY, "ours")
        _put(local_store, "12345@another-host~run1", age=1)
        deadline = time.monotonic() + 5
        while renewal.keys():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _held(local_store).holder == "theirs"
    finally:
        renewal.stop()


def test_renewal_is_a_fifth_of_the_timeout():
    """Several renewals may fail or come late (a store away for a moment) before the lease is lost."""
    assert lease.renewal_interval(30.0) == 6.0


def _at(store, key: str) -> float:
    return json.loads(store.get(key))["at"]
