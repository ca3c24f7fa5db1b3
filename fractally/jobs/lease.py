"""Leases in the object store: who is carrying a piece of work on, renewed while they do, taken over
when they stop.

One mechanism for two uses: the assembly claim (``jobs/<id>/assemble.claim``, ``fractally.jobs.tasks``:
one assembler a job at a time) and the dispatch lease (``jobs/<id>/dispatch.lease``,
``fractally.jobs.invoke``: the api replica whose invoker fans the job out). A lease is a small JSON object::

    {"by": "<pid>@<host>~<run>", "holder": "<token>", "at": <unix time of the last renewal>}

``by`` is the holding process (``orphans.owner``), ``holder`` the holder within it (an invoker, one
assembly), so two holders in one process are told apart. A lease is *live* while it was renewed less
than ``timeout`` seconds ago and its process is not seen dead; a process of this host and pid namespace
that is gone is seen dead at once (``orphans.owner_is_dead``), one elsewhere only by the time since its
last renewal. Taking a lease that is absent is atomic (``put_if_absent``); taking over one that is not
live is a plain write (the store has no compare-and-swap), so two takers racing for the same dead lease
may both win: both uses tolerate that (tiles are idempotent, a result is written put-if-absent), it only
costs the work done twice.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from fractally.store import orphans
from fractally.errors import KeyNotFound
from fractally.store import ObjectStore

log = logging.getLogger("fractally.jobs.lease")

_TYPE = "application/json"


def new_holder() -> str:
    """A token naming one holder (an invoker, an assembly) among the holders of this process."""
    return secrets.token_hex(6)


def renewal_interval(timeout: float) -> float:
    """How often a holder renews a lease that expires after ``timeout``: a fifth of it, so several
    renewals may fail or come late (a store away for a moment, a busy machine) before it is lost."""
    return timeout / 5


@dataclass(frozen=True)
class Held:
    """What a lease object says."""

    by: str  # the holding process, ``orphans.owner()``
    holder: str  # the holder within it
    at: float  # unix time of its last renewal

    def is_live(self, timeout: float) -> bool:
        """Renewed within ``timeout`` seconds, by a process not seen dead."""
        return time.time() - self.at < timeout and not orphans.owner_is_dead(self.by)


def _body(holder: str) -> bytes:
    return json.dumps({"by": orphans.owner(), "holder": holder, "at": time.time()}).encode()


def read(store: ObjectStore, key: str) -> Held | None:
    """The lease at ``key``; None if there is none. One that cannot be read is an expired one."""
    try:
        raw = json.loads(store.get(key))
        return Held(str(raw.get("by", "")), str(raw.get("holder", "")), float(raw["at"]))
    except KeyNotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return Held("", "", 0.0)


def is_held(store: ObjectStore, key: str, timeout: float, holder: str | None = None) -> bool:
    """True if someone other than ``holder`` holds a live lease at ``key`` (one GET)."""
    held = read(store, key)
    return held is not None and held.holder != holder and held.is_live(timeout)


def take(store: ObjectStore, key: str, holder: str, timeout: float) -> bool:
    """Take the lease at ``key`` for ``holder`` unless another holder's lease there is live; True if taken.

    One conditional PUT when there is no lease; else a GET, and a PUT if it is ours already (a release
    that failed) or not live (its holder stopped renewing it, or its process is seen dead).
    """
    body = _body(holder)
    if store.put_if_absent(key, body, _TYPE):
        return True
    held = read(store, key)
    if held is not None and held.holder != holder and held.is_live(timeout):
        return False
    store.put(key, body, _TYPE)
    return True


def renew(store: ObjectStore, key: str, holder: str) -> bool:
    """Rewrite ``holder``'s lease at ``key`` with the time now; False (nothing written) if it is no longer
    ``holder``'s: released, or taken over after it was seen expired."""
    held = read(store, key)
    if held is None or held.holder != holder:
        return False
    store.put(key, _body(holder), _TYPE)
    return True


def release(store: ObjectStore, key: str, holder: str) -> None:
    """Delete ``holder``'s lease at ``key``; a lease another holder has taken over is left alone."""
    held = read(store, key)
    if held is not None and held.holder == holder:
        store.delete(key)


class Renewal:
    """One thread renewing a set of leases every ``every`` seconds until ``stop``.

    ``add`` a lease once taken; ``discard`` it before releasing it: a renewal under way finishes first,
    so none comes after the release (which would bring the lease back). A lease found lost (taken over
    by another holder) is no longer renewed. The thread starts with the first ``add``.
    """

    def __init__(self, store: ObjectStore, every: float, name: str = "lease-renewal") -> None:
        self.store = store
        self.every = every
        self.name = name
        self._held: dict[str, str] = {}  # key -> holder
        self._lock = threading.Lock()  # held while a lease is renewed, and to change the set
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: str, holder: str) -> None:
        with self._lock:
            self._held[key] = holder
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def discard(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)

    def keys(self) -> dict[str, str]:
        """The leases renewed now: key -> holder."""
        with self._lock:
            return dict(self._held)

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            for key in self.keys():
                with self._lock:
                    holder = self._held.get(key)
                    if holder is None or self._stopped.is_set():
                        continue
                    try:
                        kept = renew(self.store, key, holder)
                    except Exception as err:  # the store is away for a moment: the next renewal tries again
                        log.warning("could not renew the lease %s: %s", key, err)
                        continue
                    if not kept:
                        log.warning("the lease %s was taken over by another holder", key)
                        self._held.pop(key, None)

    def stop(self) -> dict[str, str]:
        """Stop renewing (a renewal under way finishes first); the leases that were being renewed."""
        self._stopped.set()
        with self._lock:
            held, self._held = self._held, {}
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        return held
