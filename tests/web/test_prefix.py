"""The api and its pages behind a gateway that serves them under a path prefix.

The OpenFaaS gateway serves a function at ``/function/<name>/`` and forwards the rest of the path
with the prefix cut off (``/function/api/v1/renders`` reaches the api as ``/v1/renders``, and
``/function/api`` as ``/``); it says nothing of the prefix to the function. So the pages use only
relative URLs, and the api learns the prefix from ``FRACTALLY_PUBLIC_URL`` for its ``Location``
headers, links and the pages' ``<base>``. Here a small WSGI gateway on a loopback port does what
the OpenFaaS one does, in front of the real api app.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from fractally.config import Settings
from functions.api.app import create_app
from tests.support.browser import BrowserPage

PREFIX = "/function/api"
STATIC = Path(__file__).resolve().parents[2] / "functions" / "api" / "static"
SMALL_JOB = {"c": [-0.8, 0.156], "width": 64, "height": 48, "tile_size": 32, "max_iter": 50}


class PrefixGateway:
    """WSGI: ``PREFIX/rest`` goes to the app as ``/rest`` (the OpenFaaS gateway's path rewrite), anything
    else is the gateway's own 404. The app is set once the gateway's port (its public URL) is known."""

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such function\n"]
        environ["PATH_INFO"] = path[len(PREFIX):] or "/"
        return self.app(environ, start_response)


@dataclass
class Gateway:
    origin: str  # http://127.0.0.1:PORT

    @property
    def public_url(self) -> str:
        return self.origin + PREFIX


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    dispatcher = PrefixGateway()
    server = make_server("127.0.0.1", 0, dispatcher, threaded=True)
    found = Gateway(f"http://127.0.0.1:{server.server_port}")
    app = create_app(Settings(store_url=str(tmp_path / "store"), workers=2, public_url=found.public_url))
    dispatcher.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        app.extensions["fractally"].service.close()


class _Urls(HTMLParser):
    """Every URL a page loads or links to, and its ``<base href>``."""

    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "base":
            self.base = found.get("href")
        for name in ("href", "src"):
            value = found.get(name)
            if value and not value.startswith(("#", "data:")):
                self.urls.append(value)


#: A URL written from the root of the host: it would leave the prefix.
ROOT_RELATIVE = [
    re.compile(r"""(?:href|src)\s*=\s*["']/(?!/)"""),           # HTML attributes
    re.compile(r"""url\(\s*["']?/(?!/)"""),                      # CSS
    re.compile(r"""["'`]/(?:v1|static|openapi\.json|render|healthz|readyz)\b"""),  # JS string literals
]


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir() if p.suffix in {".html", ".js", ".css"}))
def test_static_files_write_no_url_from_the_root(name: str) -> None:
    text = (STATIC / name).read_text()
    found = [m.group(0) for pattern in ROOT_RELATIVE for m in pattern.finditer(text)]
    assert not found, f"{name}: {found}"


@pytest.mark.parametrize("page", [PREFIX + "/", PREFIX, PREFIX + "/render"])
def test_every_url_a_page_names_resolves_under_the_prefix(gateway: Gateway, page: str) -> None:
    """Also at ``/function/api`` without the slash, where a bare relative URL would leave the prefix."""
    response = requests.get(gateway.origin + page, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    parsed = _Urls()
    parsed.feed(response.text)
    base = urljoin(gateway.origin + page, parsed.base or "")
    assert parsed.urls
    for url in parsed.urls:
        absolute = urljoin(base, url)
        assert urlsplit(absolute).path.startswith(PREFIX + "/"), f"{url} resolves to {absolute}"
        assert requests.get(absolute, timeout=10).status_code == 200, absolute


def test_location_names_the_public_url(gateway: Gateway) -> None:
    response = requests.post(gateway.public_url + "/v1/renders", json=SMALL_JOB, timeout=10)
    assert response.status_code == 202
    assert response.headers["Location"] == f"{gateway.public_url}/v1/renders/{response.json()['id']}"
    assert requests.get(response.headers["Location"], timeout=10).status_code == 200


def test_links_in_the_body_carry_the_prefix(gateway: Gateway) -> None:
    body = requests.post(gateway.public_url + "/v1/renders", json=SMALL_JOB, timeout=10).json()
    assert body["links"] == {"self": f"{PREFIX}/v1/renders/{body['id']}",
                             "result": f"{PREFIX}/v1/renders/{body['id']}/result"}
    assert requests.get(gateway.origin + body["links"]["self"], timeout=10).status_code == 200


def test_the_explorer_under_the_prefix_loads_everything_from_under_it(browser_page: BrowserPage,
                                                                      gateway: Gateway) -> None:
    """In Chromium, opened without the trailing slash: tiles, script, style and a full-size job's
    calls and image all come from under the prefix, and nothing fails."""
    page = browser_page.page
    loaded: list[str] = []
    page.on("request", lambda r: loaded.append(r.url))
    page.goto(gateway.public_url + "#c=-0.8,0.156&m=-0.5,0,1.5&j=0,0,1.5&colormap=ocean")
    browser_page.wait_for("['mandelbrot', 'julia'].every((id) => document.getElementById(id).dataset.pending === '0'"
                          " && document.querySelectorAll(`#${id} .tiles img.loaded`).length > 0)")
    page.select_option("#size", "1280x720")
    page.click("#render-full")
    browser_page.wait_for("!document.getElementById('job-result').hidden"
                          " && document.getElementById('job-thumb').complete"
                          " && document.getElementById('job-thumb').naturalWidth > 0", timeout=60)
    ours = [url for url in loaded if url.startswith(gateway.origin)]
    kinds = {urlsplit(url).path.removeprefix(PREFIX).lstrip("/").split("/")[0] for url in ours}
    assert {"static", "v1"} <= kinds
    assert any("/v1/tiles/" in url for url in ours) and any(url.endswith("/result") for url in ours)
    assert all(urlsplit(url).path.startswith(PREFIX) for url in ours), \
        [url for url in ours if not urlsplit(url).path.startswith(PREFIX)]
    assert browser_page.errors == []
