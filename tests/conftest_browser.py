"""Browser fixtures: Debian's Chromium, headless, driven by Playwright for Python.

Loaded from tests/conftest.py via ``pytest_plugins``. The browser is ``/usr/bin/chromium`` from
``apt-get install chromium`` (``make test`` installs it when missing); Playwright's own browser
download is never used. Without that binary (or without the playwright package) the browser
tests skip and say why. Names start with ``browser_`` so they cannot shadow other fixtures.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="module")
def browser_chromium() -> Iterator[Any]:
    """One headless Chromium per test module (it takes about a second to start)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "(apt-get install -y chromium, or make test, which installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(browser_chromium: Any, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    """A fresh context (no shared cache or storage) at 1280×720; a screenshot lands in test-artifacts/."""
    context = browser_chromium.new_context(viewport=VIEWPORT, device_scale_factor=1, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    result = BrowserPage(page)
    page.on("console", lambda m: m.type == "error" and result.errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: result.errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: r.status >= 400 and result.errors.append(f"HTTP {r.status}: {r.url}"))
    try:
        yield result
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        except Exception as err:  # an artifact, best effort: never hide the test's own outcome
            print(f"no screenshot for {name}: {err}")
        finally:
            context.close()
