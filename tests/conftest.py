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


_caught: dict[str, list[str]] = {}  # where -> refusals there (a test that expects none, or "outside tests")
_in_tests: set[int] = set()  # indexes into network_guard.refused made during some test, expected or not


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    before = len(network_guard.refused)
    try:
        return (yield)
    finally:
        after = len(network_guard.refused)
        _in_tests.update(range(before, after))
        if after > before and not getattr(getattr(item, "module", None), "EXPECTS_REFUSALS", False):
            _caught.setdefault(item.nodeid, []).extend(network_guard.refused[before:after])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Refusals a library swallowed would otherwise go unseen: list them, by test."""
    outside = [m for i, m in enumerate(network_guard.refused) if i not in _in_tests]  # imports, collection
    if outside:
        _caught["outside tests"] = outside
    if not _caught:
        return
    terminalreporter.section("network guard: refused", yellow=True)
    for where, messages in _caught.items():
        for message in dict.fromkeys(messages):
            count = messages.count(message)
            terminalreporter.line(f"{where}: {message}" + (f" (x{count})" if count > 1 else ""))
