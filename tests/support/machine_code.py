"""The machine code numba makes for our kernels, for the tests of docs/api.md's no-FMA rule.

numba refuses to show the assembly of code loaded from its cache, so a script compiles the kernels in a
child process with an empty NUMBA_CACHE_DIR and prints their assembly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Fused multiply-add and -subtract instructions (FMA3, AVX-512, scalar and packed).
FUSED = re.compile(r"\bv?f(?:n)?m(?:add|sub)\w*")


def compiled_asm(script: str, cache_dir: Path) -> str:
    """What ``script`` prints, run in a fresh interpreter with ``cache_dir`` as numba's (empty) cache;
    skipped, saying why, when the JIT is off (there is no machine code then)."""
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        print("skipped: NUMBA_DISABLE_JIT=1, there is no machine code to inspect")
        pytest.skip("NUMBA_DISABLE_JIT=1: no machine code to inspect")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fused_instructions(asm: str) -> list[str]:
    """The FMA instructions in ``asm``, each once."""
    return sorted(set(FUSED.findall(asm)))
