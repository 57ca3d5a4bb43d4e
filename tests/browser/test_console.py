"""The web console in real headless Chromium against a real `ragline serve`: the way a user works through it.

The tests run in file order on one server and one signed-in tab (a journey: sign in, upload, search, ask,
run an agent, manage tokens); each saves screenshots under test-artifacts/browser/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `console` fixture skips (or, in CI, fails) before any test needs it
    expect = None

from tests.browser.conftest import PASSWORD, USERNAME, Console
from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INGEST_TIMEOUT_MS = 90_000


def test_sign_in_and_upload_files_with_live_status(console: Console, tmp_path: Path) -> None:
    page = console.page
    page.goto(console.base_url + "/")
    page.get_by_role("heading", name="Sign in to Ragline").wait_for()
    console.shot("01-sign-in")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong username or password.").wait_for()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    view = console.view()
    view.get_by_role("heading", name="Knowledge", level=1).wait_for()
    assert USERNAME in page.locator("#who").inner_text()

    view.get_by_label("Name", exact=True).fill("Handbook")
    view.get_by_role("button", name="Create", exact=True).click()
    view.get_by_role("heading", name="Handbook", level=2).wait_for()
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(make_pdf(HANDBOOK_PAGES, title="Employee handbook"))
    notes = tmp_path / "it-notes.txt"
    notes.write_text("Laptops are replaced every three years. The IT helpdesk is open from 8 to 18.")
    view.get_by_label("Files").set_input_files([str(pdf), str(notes)])
    view.get_by_label("Tags (optional, comma-separated)").fill("hr")
    view.get_by_role("button", name="Upload", exact=True).click()
    for name in ("handbook.pdf", "it-notes.txt"):  # each file: its own progress bar, filled on success
        bar = view.get_by_label(f"Upload of {name}")
        bar.wait_for()
        page.wait_for_function("el => el.value === 100", arg=bar.element_handle())
    # the file table polls GET .../files until every file is ready
    ready = view.locator("tbody tr", has=page.locator(".badge-ready"))
    all_ready = "n => document.querySelectorAll('section.view:not([hidden]) tbody .badge-ready').length === n"
    page.wait_for_function(all_ready, arg=2, timeout=INGEST_TIMEOUT_MS)
    assert ready.count() == 2
    assert view.locator("caption").inner_text() == "Files (2)"
    console.shot("02-knowledge")

    with page.expect_download() as download:  # the original, fetched with the token
        view.get_by_role("button", name="Download it-notes.txt").click()
    saved = tmp_path / "downloaded.txt"
    download.value.save_as(saved)
    assert saved.read_text() == notes.read_text()


def test_search_shows_file_page_and_highlighted_passage(console: Console) -> None:
    view = console.go("Search", "Search")
    view.get_by_label("Query").fill("how many vacation days")
    view.get_by_label("Mode").select_option("hybrid")
    view.get_by_role("button", name="Search", exact=True).click()
    first = view.locator(".hit").first
    first.wait_for()
    head = first.locator(".hit-head").inner_text()
    assert "handbook.pdf" in head and "page 2" in head
    marks = [m.lower() for m in first.locator("mark").all_inner_texts()]
    assert "vacation" in marks and "days" in marks

    view.get_by_label("Tags (comma-separated)").fill("no-such-tag")
    view.get_by_role("button", name="Search", exact=True).click()
    view.get_by_text("No passage matches.").wait_for()
    view.get_by_label("Tags (comma-separated)").fill("hr")
    view.get_by_label("Mode").select_option("sparse")
    view.get_by_role("button", name="Search", exact=True).click()
    view.locator(".hit").first.wait_for()
    console.shot("03-search")


def test_assistant_streams_an_answer_whose_citation_opens_the_pdf_page(console: Console) -> None:
    page = console.page
    view = console.go("Assistant", "Assistant")
    view.get_by_label("Message").fill("How many vacation days do employees get?")
    view.get_by_label("Message").press("Enter")
    answer = view.locator(".msg-assistant").last
    page.wait_for_function("el => el.getAttribute('aria-busy') === 'false'", arg=answer.element_handle())
    assert "twenty-five days" in answer.locator(".answer").inner_text()
    assert view.locator(".chat-log").get_attribute("aria-live") == "polite"
    source = answer.locator(".sources button.cite").first
    assert "handbook.pdf, page 2" in source.inner_text()
    expect(view.locator(".pick-list .pick").first).to_contain_text("How many vacation days")  # the session list
    console.shot("04-assistant")

    with page.expect_request(re.compile(r"/files/[^/]+/download$")), console.context.expect_page() as opened:
        answer.locator(".answer button.cite").first.click()  # the [1] inside the answer
    tab = opened.value
    tab.wait_for_function("() => location.href.startsWith('blob:')")  # a function: the page's CSP forbids eval
    assert tab.evaluate("location.href").endswith("#page=2")
    page.wait_for_timeout(1000)  # the PDF viewer draws
    console.shot("05-citation-pdf-page-2", tab, full_page=False)
    tab.close()


def test_agent_run_streams_its_trace_and_can_be_cancelled(console: Console) -> None:
    page = console.page
    view = console.go("Agents", "Agents")
    # create one through the form (the built-in extractive model) and run it to the end
    view.get_by_label("Name", exact=True).fill("Policy helper")
    view.get_by_label("Handbook").check()
    view.get_by_role("button", name="Create", exact=True).click()
    view.get_by_role("heading", name="Policy helper", level=2).wait_for()
    view.get_by_label("Input").fill("expense reimbursement")
    view.get_by_role("button", name="Run", exact=True).click()
    view.locator(".trace li[data-type=done]").wait_for()
    assert "Expense reimbursement" in view.locator(".detail .answer").inner_text()
    types = view.locator(".trace li").evaluate_all("items => items.map(li => li.dataset.type)")
    assert types[0] == "execution" and "tool_start" in types and types[-1] == "done"

    # a slow model (scripted server): cancel mid-stream
    with console.api() as api:
        made = api.post("/api/v1/agents", json={"name": "Slow writer", "model": "openai/scripted", "tools": []})
        assert made.status_code == 201, made.text
    console.go("Knowledge", "Knowledge")  # agents are listed when the view opens
    view = console.go("Agents", "Agents")
    view.get_by_role("button", name=re.compile("^Slow writer")).click()
    view.get_by_role("heading", name="Slow writer", level=2).wait_for()
    view.get_by_label("Input").fill("When is vacation booked?")
    view.get_by_role("button", name="Run", exact=True).click()
    view.locator(".trace li[data-type=thinking]").wait_for()
    console.shot("06-agent-live-trace")
    view.get_by_role("button", name="Cancel run").click()
    cancelled = view.locator(".trace li[data-type=error]")
    cancelled.wait_for()
    assert "cancelled" in cancelled.inner_text()
    view.get_by_text("Run cancelled.").wait_for()
    page.get_by_role("cell", name="cancelled").first.wait_for()  # the runs table shows it
    console.shot("07-agent-cancelled")


def test_tokens_show_the_secret_once_and_revoke(console: Console) -> None:
    view = console.go("Tokens", "API tokens")
    view.get_by_label("Name", exact=True).fill("ci bot")
    view.get_by_label("Role").select_option("viewer")
    view.get_by_role("button", name="Create token").click()
    secret = view.get_by_role("textbox", name="Secret").input_value()
    assert secret.startswith("rl_")
    row = view.locator("tbody tr", has_text="ci bot")
    row.wait_for()
    console.shot("08-tokens")
    with console.api() as api:
        assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    console.page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke ci bot").click()
    row.locator(".badge-revoked").wait_for()
    with console.api() as api:
        assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    view.get_by_role("button", name="I have stored it").click()
    assert view.get_by_role("textbox", name="Secret").count() == 0  # gone from the page


def test_keyboard_and_phone_layout(console: Console) -> None:
    page = console.page
    console.go("Search", "Search")
    page.keyboard.press("Tab")  # from the focused heading, Tab reaches the next control
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "SELECT", "BUTTON", "A")
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => !el.labels?.length && !el.getAttribute('aria-label')).map(el => el.outerHTML)""")
    assert not unlabeled, f"controls without a label: {unlabeled}"
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        for link, title, name in (
            ("Search", "Search", "09-phone-search"),
            ("Assistant", "Assistant", "10-phone-assistant"),
        ):
            console.go(link, title)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{link} scrolls sideways on a phone ({width}px)"
            console.shot(name)
    finally:
        page.set_viewport_size({"width": 1280, "height": 860})


def test_api_docs_work_offline_and_take_a_token(console: Console) -> None:
    page = console.page
    page.goto(console.base_url + "/schema/swagger")
    page.locator(".swagger-ui .info .title", has_text="Ragline API").wait_for()
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").first.fill(console.server.token)  # the bearer scheme comes first
    dialog.locator("button.modal-btn.authorize").first.click()  # its accessible name: "Apply credentials"
    dialog.locator("button.btn-done").first.click()
    me = page.locator(".opblock", has=page.locator('[data-path="/api/v1/me"]')).first
    me.locator(".opblock-summary").click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    status = me.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_contain_text("200")  # Swagger UI sent the token
    me.scroll_into_view_if_needed()
    console.shot("11-api-docs-try-it-out", full_page=False)
    assert not console.outside_requests, f"the browser reached beyond the server: {console.outside_requests}"


def test_pasted_token_sign_in_and_sign_out(console: Console) -> None:
    page = console.page
    page.goto(console.base_url + "/")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Ragline").wait_for()
    page.get_by_label("API token").fill(console.server.token)
    page.get_by_role("button", name="Use token").click()
    console.view().get_by_role("heading", name="Knowledge", level=1).wait_for()
    assert page.evaluate("sessionStorage.getItem('ragline.token-kind')") == "pasted"
    page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("sessionStorage.getItem('ragline.token')") is None
    with console.api() as api:  # a pasted token is only forgotten, never revoked
        assert api.get("/api/v1/me").status_code == 200
