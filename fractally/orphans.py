"""What a process that died leaves behind: temporary files and assembly claims.

Each carries its owner's pid and host, so a successor on the same host (the worker gunicorn starts
in place of one it killed, a restarted server) can tell at once that the owner is gone and clean
up after it. An owner on another host is never judged here: its pid means nothing on this one.
"""

from __future__ import annotations

import os
import socket

#: Ends the owner in a temporary file's name: ``<kind><pid>@<host>~<anything>`` (no host has a ``~``).
_END = "~"
_HOST = socket.gethostname()  # read once: temporary files are named on the hot path of every tile


def is_dead(host: str, pid: int) -> bool:
    """True if ``pid`` was a process of this host (not this one) that no longer exists."""
    if host != _HOST or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


def temp_prefix(kind: str) -> str:
    """The start of this process's temporary file names of ``kind`` (e.g. ``"put-"``)."""
    return f"{kind}{os.getpid()}@{_HOST}{_END}"


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
        owner = entry.name[len(kind):].partition(_END)[0]
        pid, _, host = owner.partition("@")
        if pid.isdigit() and host and is_dead(host, int(pid)):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass  # another successor was quicker
    return removed
