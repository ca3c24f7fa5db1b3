"""What the browser tests drive: Debian's Chromium, headless, through Playwright for Python.

The browser is ``/usr/bin/chromium`` from ``apt-get install chromium`` (``make test`` installs it when
missing); Playwright's own browser download is never used. Without that binary (or without the
playwright package) the browser tests skip and say why. The fixtures ``browser_chromium`` and
``browser_page`` are in tests/web/conftest.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}


@dataclass
class BrowserPage:
    """A page plus everything it complained about: console errors, uncaught exceptions, 4xx/5xx answers."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value.

        Playwright's ``wait_for_function`` evaluates strings with ``eval``, which the explorer's
        Content-Security-Policy forbids (rightly); ``evaluate`` is not subject to it.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(f"() => ({expression})")
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {expression}")
            time.sleep(0.05)


