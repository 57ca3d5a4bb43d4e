"""API fixtures: the real app (SQLite, embedded Qdrant, real model) on a temporary data directory.

With ``RAGLINE_TEST_DATABASE_URL`` set, every app gets a fresh PostgreSQL database instead of SQLite.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.container import Services, build_services
from api.services.identity import TOKEN_PREFIX
from engine.ports import ModelProvider
from engine.settings import Settings
from tests.helpers import postgres
from tests.helpers.schema_template import copy_sqlite_template


class Api:
    """A test client that knows the admin token and speaks the envelope."""

    def __init__(self, client: TestClient[Any], token: str) -> None:
        self.client = client
        self.token = token

    @property
    def services(self) -> Services:
        services: Services = self.client.app.state.services
        return services

    def call(self, fn: Any, *args: Any) -> Any:
        """Run an async service call on the app's own event loop."""
        with self.client.portal() as portal:
            return portal.call(fn, *args)

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def create_kb(self, name: str = "handbook", token: str | None = None) -> str:
        response = self.request("POST", "/api/v1/knowledge-bases", json={"name": name}, token=token)
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])

    def upload(self, kb_id: str, name: str, data: bytes, **kwargs: Any) -> Any:
        return self.request("POST", f"/api/v1/knowledge-bases/{kb_id}/files", files={"file": (name, data)}, **kwargs)

    def wait_ingested(self, kb_id: str, file_id: str, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.request("GET", f"/api/v1/knowledge-bases/{kb_id}/files/{file_id}")
            body = response.json()["data"]
            if body["status"] in ("ready", "failed"):
                return dict(body)
            time.sleep(0.1)
        raise AssertionError(f"file {file_id} not ingested in {timeout_s}s")

    def search(self, query: str, **body: Any) -> list[dict[str, Any]]:
        response = self.request("POST", "/api/v1/search", json={"query": query, **body})
        assert response.status_code == 200, response.text
        return list(response.json()["data"])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an app on ``data_dir`` whose metadata database is already migrated (a copy of a template:
    ``tests/helpers/schema_template.py``), on PostgreSQL when ``RAGLINE_TEST_DATABASE_URL`` is set."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    if postgres.SERVER_URL and "database_url" not in overrides:
        overrides["database_url"] = postgres.fresh_database(migrated=True)
    settings = Settings.from_env({}, data_dir=data_dir, torch_threads=1, bootstrap_token=token, **overrides)
    if not settings.database_url:
        copy_sqlite_template(data_dir / "ragline.db")
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@contextlib.contextmanager
def open_api(settings: Settings, embedder: Any, *, models: ModelProvider | None = None) -> Iterator[Api]:
    """A running app (lifespan included) and its admin client; the session's embedder is handed in,
    and ``models`` replaces the model provider (e.g. a ``StaticModelProvider`` over a scripted client)."""
    services = build_services(settings, embedder=embedder, models=models)
    with TestClient(create_app(services=services)) as client:
        yield Api(client, settings.bootstrap_token)


@pytest.fixture
def api(settings: Settings, embedder: Any) -> Iterator[Api]:
    with open_api(settings, embedder) as client:
        yield client


@pytest.fixture
def handbook(api: Api) -> str:
    """A knowledge base holding the five-page handbook PDF, ingested (its id)."""
    from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

    kb = api.create_kb("handbook")
    file_id = api.upload(kb, "handbook.pdf", make_pdf(HANDBOOK_PAGES)).json()["data"]["id"]
    assert api.wait_ingested(kb, file_id)["status"] == "ready"
    return kb
