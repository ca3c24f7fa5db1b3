"""What a process that died leaves behind: temporary files, assembly claims and dispatch leases.

Each carries its owner's pid and host, so a successor on the same host (the worker gunicorn starts
in place of one it killed, a restarted server) can tell at once that the owner is gone and clean
up after it. An owner on another host is never judged here: its pid means nothing on this one.

"Host" is the hostname *and the pid namespace*: containers started with ``--network host`` (and
Kubernetes pods with ``hostNetwork``) share the machine's hostname but each has pids of its own, so
a live process in the next container could have a pid that does not exist here. Only a process in
the same pid namespace is judged by its pid; any other is judged by its owner's own rules (for a
lease or a claim: the time since it was last renewed).
"""

from __future__ import annotations

import os
import secrets
import socket

#: Separates the owner's host from its run, and ends the owner in a temporary file's name:
#: ``<kind><pid>@<host>~<run>~<anything>`` (no host has a ``~``).
_END = "~"


def _pid_namespace() -> str:
    """This process's pid namespace: the inode of ``/proc/self/ns/pid`` (Linux), else ``""``."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux, or no /proc: one namespace per hostname, as before
        return ""


def _host() -> str:
    """``<hostname>.pidns<inode>`` (just the hostname where the namespace cannot be read); no ``~``."""
    namespace = _pid_namespace()
    return f"{socket.gethostname()}.pidns{namespace}" if namespace else socket.gethostname()


#: This host and pid namespace, read once: temporary files are named on the hot path of every tile.
HOST = _host()
#: This run of the program: a file with our pid but another run's token was left by an earlier process
#: that had our pid (pids repeat, in containers above all: a restarted worker is often the same pid).
_RUN = secrets.token_hex(4)


def _is_dead(host: str, pid: int) -> bool:
    """True if ``pid`` was a process of this host and pid namespace (not this one) that no longer exists."""
    if host != HOST or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


def owner() -> str:
    """This process as the owner of a temporary file or a lease (``fractally.jobs.lease``): ``<pid>@<host>~<run>``."""
    return f"{os.getpid()}@{HOST}{_END}{_RUN}"


def owner_is_dead(tag: str) -> bool:
    """True if ``tag`` (an ``owner()``) names a process of this host and pid namespace that is gone:
    another pid that no longer exists, or our pid in an earlier run. Anything else, malformed tags and
    processes of other pid namespaces on this machine included, is alive."""
    who, _, run = tag.partition(_END)
    pid, _, host = who.partition("@")
    if not pid.isdigit() or not host:
        return False
    if host == HOST and int(pid) == os.getpid():
        return run != _RUN  # an earlier process with our pid (a forked child gets a pid of its own)
    return _is_dead(host, int(pid))


def temp_prefix(kind: str) -> str:
    """The start of this process's temporary file names of ``kind`` (e.g. ``"put-"``)."""
    return f"{kind}{owner()}{_END}"


def remove_orphans(folder: str | os.PathLike[str], kind: str) -> int:
    """Remove the temporary files of ``kind`` in ``folder`` whose owner died; return how many.

    Files of live processes, of other hosts and of other names are left alone.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(kind):
            continue
        tag = _END.join(entry.name[len(kind):].split(_END, 2)[:2])  # <pid>@<host>~<run>, without the rest
        if owner_is_dead(tag):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass  # another successor was quicker
    return removed
