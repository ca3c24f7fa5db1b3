"""Fixtures of the HTTP side's tests: a real browser, and the service deployed embedded or as a stack."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from fractally.ops.serving import LiveServer
from tests.support.api import running_server
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, VIEWPORT, BrowserPage
from tests.support.e2e import STARTUP_TIMEOUT, Deployment, running_stack


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per test module (starting one takes a second or two)."""
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server



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



@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """``fractally serve --port 0`` over a fresh local folder (the api tests' launcher: no port race)."""
    root = tmp_path_factory.mktemp("embedded")
    with running_server(root, startup_timeout=STARTUP_TIMEOUT) as server:
        yield Deployment("embedded", server.url, server.store, logs=[root / "serve.err", root / "serve.out"])



@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The multi-process stack with 2 render_tile workers, over its own S3 test server."""
    logs = tmp_path_factory.mktemp("stack")
    with running_stack(logs) as running:
        yield Deployment("stack", running.urls.api, running.store(), s3_log=logs / "s3.log",
                         logs=[logs / f"{name}.log" for name in ("api", "render_tile", "assemble")])



@pytest.fixture(scope="module", params=["embedded", "stack"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """The same end-to-end case against both modes."""
    return request.getfixturevalue(request.param)

