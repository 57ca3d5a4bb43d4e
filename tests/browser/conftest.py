"""Real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real `ragline serve`.

No browser download: Playwright's wheel brings its driver, the browser is the system's. Without Chromium (or
Playwright) the tests skip locally, but fail in CI (``CI`` set), where ``.ci/run`` installs both.
Screenshots go to ``test-artifacts/browser/`` in the repository root (``RAGLINE_TEST_ARTIFACTS`` moves the
parent folder); the folder carries its own ``.gitignore``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, LiveServer, start_server, stop_server
from tests.helpers.openai_server import Reply, scripted_server

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
USERNAME, PASSWORD = "ada", "correct horse battery staple"
# the agent-run test's model: a slow stream (thinking, then content), long enough to cancel mid-run
SLOW_REPLY = Reply(
    reasoning="Reading the handbook before answering. " * 4,
    text="Vacation is booked in the HR portal. " * 4,
    split=20,
    delay_s=0.2,
)


def chromium_path() -> str | None:
    found = os.environ.get("RAGLINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).is_file() and os.access(found, os.X_OK) else None


def artifacts_dir() -> Path:
    base = Path(os.environ.get("RAGLINE_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots and other outputs of test runs\n*\n")
    return folder


def _require_browser() -> tuple[Any, str]:
    """Playwright's sync API and the Chromium binary, or skip (locally) / fail (in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, reason = None, "playwright is not installed (pip install -e '.[dev]')"
    path = chromium_path()
    if sync_playwright is not None and path is None:
        wanted = os.environ.get("RAGLINE_CHROMIUM") or "/usr/bin/chromium"
        reason = f"no Chromium at {wanted} (apt-get install chromium chromium-driver)"
    if sync_playwright is None or path is None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright, path


@dataclass
class Console:
    """The server, the browser context and what the tests made so far (they run in file order)."""

    server: LiveServer
    context: Any
    page: Any
    shots: Path
    model_url: str
    outside_requests: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def api(self) -> httpx.Client:
        return self.server.client()

    def shot(self, name: str, page: Any = None, *, full_page: bool = True) -> Path:
        path = self.shots / f"{name}.png"
        (page or self.page).screenshot(path=str(path), full_page=full_page)
        print(f"screenshot: {path}")
        return path

    def view(self) -> Any:
        """The visible section of the console (the others are hidden, with controls of the same names)."""
        return self.page.locator("section.view:visible")

    def go(self, link: str, title: str) -> Any:
        self.page.get_by_role("link", name=link, exact=True).click()
        self.page.locator("section.view:visible h1", has_text=title).wait_for()
        return self.view()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    sync_playwright, chromium = _require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    with scripted_server(default=lambda _n: SLOW_REPLY) as model:
        model_env = {"RAGLINE_MODEL_API_BASE": model.base_url, "RAGLINE_MODEL_API_KEY": "sk-test"}
        server = start_server(tmp / "data", model_env)
        try:
            with server.client() as api:
                made = api.post("/api/v1/users", json={"name": USERNAME, "password": PASSWORD, "role": "editor"})
                assert made.status_code == 201, made.text
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(tmp / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                    viewport={"width": 1280, "height": 860}, accept_downloads=True,
                )  # fmt: skip
                session = Console(server, context, context.pages[0] if context.pages else context.new_page(),
                                  artifacts_dir(), model.base_url)  # fmt: skip
                errors: list[str] = []
                session.page.on("pageerror", lambda exc: errors.append(str(exc)))
                context.on("request", lambda req: _note_outside(session, req.url))
                try:
                    yield session
                finally:
                    context.close()
                assert not errors, f"uncaught errors in the console: {errors}"
        finally:
            stop_server(server)


def _note_outside(session: Console, url: str) -> None:
    """Network requests to anything but the server (the PDF viewer's chrome:// files ship with Chromium)."""
    if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith(session.base_url + "/"):
        session.outside_requests.append(url)
