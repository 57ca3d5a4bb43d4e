"""Shared fixtures: one real embedding model per test session; no network beyond loopback."""

from __future__ import annotations

from tests.helpers import network_guard

network_guard.install()  # first: nothing imported below may reach a model endpoint or any outside host

import os  # noqa: E402

import pytest  # noqa: E402

import engine  # noqa: E402, F401  (offline environment and thread limits before numpy/torch)

os.environ.setdefault("RAGLINE_TORCH_THREADS", "1")


@pytest.fixture(scope="session")
def embedder():
    """The default embedder users get (bundled all-MiniLM-L6-v2 as int8 ONNX), loaded once per session.

    One thread keeps CI's 2 cores responsive; the ONNX export is made once per machine.
    """
    from engine.embedders import create_embedder
    from engine.settings import Settings

    model = create_embedder(Settings.from_env(torch_threads=1))
    model.warm_up()  # type: ignore[attr-defined]
    return model


_outside_from = 0  # refusals before the first test (imports, collection) are listed at the end


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """A refusal the code under test swallowed fails that test (it reached for the network when it should not)."""
    before = len(network_guard.refused)
    result = yield
    refused = network_guard.refused[before:]
    if refused and not getattr(getattr(item, "module", None), "EXPECTS_REFUSALS", False):
        raise AssertionError("network guard refused: " + "; ".join(dict.fromkeys(refused)))
    return result


def pytest_collection_finish(session: pytest.Session) -> None:
    global _outside_from
    _outside_from = len(network_guard.refused)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Refusals while importing and collecting would otherwise go unseen: list them."""
    outside = network_guard.refused[:_outside_from]
    if outside:
        terminalreporter.section("network guard: refused outside tests", yellow=True)
        for message in dict.fromkeys(outside):
            terminalreporter.line(message)
