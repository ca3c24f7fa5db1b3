"""glibc malloc is told to keep freed tile arrays (fractally.malloc), by every entry point.

Checked by behaviour, in fresh processes (``tests/support/malloc_probe.py``): after an entry point has started,
blocks under 4 MiB come from the heap, the threshold no longer moves, and freed heap is kept.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from fractally.malloc import keep_freed_memory
from tests.support.api import REPO_ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the settings are glibc's; elsewhere they do nothing")



def malloc_after(entry: str) -> dict[str, object]:
    """The probe's findings in a new interpreter that first started ``entry`` (``none``: nothing)."""
    done = subprocess.run([sys.executable, "-m", "tests.support.malloc_probe", entry], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_glibc_takes_the_malloc_settings() -> None:
    assert keep_freed_memory()


def test_without_the_settings_malloc_maps_and_trims_as_glibc_does_by_default() -> None:
    """The control: the probe tells glibc's defaults from our settings on this machine."""
    seen = malloc_after("none")
    assert seen["mapped_3mib"] and not seen["mapped_4_5mib_after_5mib"]
    assert seen["kept_mib"] == 0  # trimmed: the default trim threshold is 128 KiB


@pytest.mark.parametrize("entry", ["cli", "function_app", "api_app"])
def test_every_entry_point_keeps_freed_memory(entry: str) -> None:
    """``fractally`` (every command: main applies them before dispatching), a function's app and the api's."""
    seen = malloc_after(entry)
    assert not seen["mapped_3mib"] and seen["mapped_4_5mib_after_5mib"]  # a fixed 4 MiB mmap threshold
    assert seen["kept_mib"] >= 30  # the ten freed 3 MiB blocks stay in the heap (trim threshold 64 MiB)
