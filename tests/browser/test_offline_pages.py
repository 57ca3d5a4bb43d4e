"""The console and the API docs load nothing from another host: no CDN, no web font, they work offline.

Every page is fetched without a token (they are public), then everything it loads (scripts, styles, icons, the
console's modules, recursively). The pages and the console's own files may not name another host at all.
Swagger UI's vendored bundle mentions many URLs as plain strings (XML namespaces, RFCs in messages); what it
really loads is checked in a real browser by ``test_console.py::test_api_docs_work_offline``.
This module needs no browser: it runs everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from api.routes.console import CONSOLE_DIR, SWAGGER_ASSETS
from tests.api.conftest import Api, make_settings, open_api

PAGES = ["/", "/schema", "/schema/swagger"]
HOST = "testserver.local"  # the TestClient's base URL
URL = re.compile(r"""https?://[^\s"'`<>()\\]+""")
# what a file loads: HTML src/href attributes, ES module imports, CSS url() and @import
LOADS = {
    "html": re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']"""),
    "js": re.compile(r"""^\s*(?:import|export)\s+(?:[\w{}\s,*]+\s+from\s+)?["']([^"']+)["']""", re.MULTILINE),
    "css": re.compile(r"""(?:\burl\(\s*["']?([^"')]+)|@import\s+["']([^"']+))"""),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Api]:
    with open_api(make_settings(tmp_path_factory.mktemp("offline") / "data"), embedder) as client:
        yield client


def loaded(base: str, kind: str, text: str) -> list[str]:
    refs = [next(g for g in match.groups() if g) for match in LOADS[kind].finditer(text)]
    return [urljoin(base, ref) for ref in refs if not ref.startswith(("data:", "blob:", "#", "javascript:"))]


def kind_of(path: str, content_type: str) -> str | None:
    if path.startswith(SWAGGER_ASSETS + "/swagger-ui"):
        return None  # the vendored bundle: see the module's docstring
    for kind in ("html", "css", "js"):
        if kind in content_type or path.endswith("." + kind):
            return kind
    return "js" if "javascript" in content_type else None


def crawl(api: Api) -> dict[str, str]:
    """Every page and every file it loads (recursively): URL -> text."""
    seen: dict[str, str] = {}
    queue = [f"http://{HOST}{page}" for page in PAGES]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        parts = urlsplit(url)
        assert parts.netloc == HOST, f"a page loads {url} from another host"
        response = api.client.get(parts.path)  # no token: the pages and their assets are public
        assert response.status_code == 200, f"{parts.path}: {response.status_code}"
        seen[url] = response.text
        kind = kind_of(parts.path, response.headers.get("content-type", ""))
        if kind:
            queue += loaded(url, kind, response.text)
    return seen


def test_every_page_and_asset_loads_from_this_server_only(api: Api) -> None:
    pages = crawl(api)
    console_files = {p.relative_to(CONSOLE_DIR).as_posix() for p in CONSOLE_DIR.rglob("*") if p.is_file()}
    served = {urlsplit(u).path.removeprefix("/console/") for u in pages if "/console/" in u}
    assert console_files - {"index.html"} <= served, "every console file is reachable from the page"
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png"):
        assert f"http://{HOST}{SWAGGER_ASSETS}/{asset}" in pages, f"/schema/swagger does not load {asset} locally"


def test_pages_and_console_files_name_no_other_host(api: Api) -> None:
    document = api.client.get("/schema/openapi.json").text
    in_document = set(URL.findall(document))  # example values of the API (callback URLs): data, not loads
    for url, text in crawl(api).items():
        path = urlsplit(url).path
        if path.startswith(SWAGGER_ASSETS):
            continue
        foreign = sorted({u for u in URL.findall(text) if urlsplit(u).hostname != HOST} - in_document)
        assert not foreign, f"{path} names other hosts: {foreign}"


def test_swagger_css_loads_nothing_remote(api: Api) -> None:
    css = api.client.get(f"{SWAGGER_ASSETS}/swagger-ui.css").text
    targets = [m.group(1) for m in re.finditer(r"""url\(\s*["']?([^"')]+)""", css)]
    assert targets and all(t.startswith("data:") for t in targets), [t for t in targets if not t.startswith("data:")]


def test_only_the_docs_files_of_the_bundle_are_served(api: Api) -> None:
    # the package also ships Swagger's demo index.html, which points at the petstore on the internet
    assert api.client.get(f"{SWAGGER_ASSETS}/index.html").status_code == 404
    assert api.client.get(f"{SWAGGER_ASSETS}/swagger-initializer.js").status_code == 404
    assert api.client.get("/schema/redoc").status_code == 404  # Litestar's Redoc page loads a CDN: not served


def test_console_page_forbids_other_origins() -> None:
    from api.routes.console import CONSOLE_CSP

    assert "default-src 'self'" in CONSOLE_CSP and "http" not in CONSOLE_CSP
    assert (Path(CONSOLE_DIR) / "index.html").read_text().count("<script") == 1  # one module, no inline script
