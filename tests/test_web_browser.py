"""The dashboard page in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
installs) driven by Playwright, against `nexus serve` on a workspace made by `nexus demo`.

`NEXUS_UPDATE_SCREENSHOT=1` also writes the dashboard's screenshot to docs/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexus.service import Service
from nexus.store import Workspace
from nexus.task import Status
from tests.conftest import REPO_ROOT, git, run_nexus
from tests.test_web_api import serve_process

CHROMIUM = shutil.which("chromium")
# What this machine's Chromium needs headless and offline (Playwright adds a fresh profile).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COLUMNS = ["pending", "ready", "in_progress", "complete", "failed", "cancelled"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (`apt-get install chromium`; .ci/run does)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


_TEMPLATE: dict[str, Any] = {}


@pytest.fixture
def demo(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of one workspace made by `nexus demo` (its pipeline complete), plus a ready task
    with two pending dependents, a failed and a cancelled one."""
    if not _TEMPLATE:
        base = tmp_path_factory.mktemp("demo-template")
        run_nexus("demo", "demo", cwd=base)
        svc = Service(Workspace(base / "demo"))
        research = svc.add("Research OAuth2 flows", size="S", role="aria", acceptance=["flows"])
        impl = svc.add("Implement token endpoint", role="code", deps=[research.id])
        svc.add("Write endpoint tests", role="alpha", deps=[impl.id])
        docs = svc.add("Update the docs", role="beta")
        svc.set_status(docs.id, Status.FAILED, reason="failed", error="docs site down")
        old = svc.add("Old approach", size="S")
        svc.set_status(old.id, Status.CANCELLED, reason="cancelled")
        _TEMPLATE.update(root=base / "demo", ready=research)
    root = tmp_path / "demo"
    shutil.copytree(_TEMPLATE["root"], root, symlinks=True)
    return {"root": root, "ready": _TEMPLATE["ready"]}


@pytest.fixture
def page(browser: Any, demo: dict[str, Any]) -> Iterator[Any]:
    with serve_process(demo["root"], dict(os.environ)) as url:
        tab = browser.new_page(viewport={"width": 1360, "height": 1000})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(url)
        tab.locator("#live.on").wait_for()  # the live feed is connected
        tab.locator(".card").first.wait_for()
        # The feed's first event reloads every panel: let those loads land before a test acts
        # (a board re-drawn under a drag lost the drop, now and then, in full runs).
        tab.wait_for_load_state("networkidle")
        yield tab
        tab.close()
        assert errors == [], errors


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def card(page: Any, column: str, task_id: str) -> Any:
    return page.locator(f".col-{column} .card[data-id='{task_id}']")


def test_the_board_shows_every_status_column_with_its_count(
    page: Any, demo: dict[str, Any], tmp_path: Path
) -> None:
    assert page.locator(".column h3").all_inner_texts() == [
        f"{name.replace('_', ' ')}\n{n}"
        for name, n in zip(COLUMNS, [2, 1, 0, 5, 1, 1], strict=True)
    ]
    for column, n in zip(COLUMNS, [2, 1, 0, 5, 1, 1], strict=True):
        expect(page.locator(f".col-{column} .card")).to_have_count(n)
    expect(page.locator("#graph svg .node")).to_have_count(10)
    expect(page.locator("#agents tbody tr")).to_have_count(5)
    # The picture in the docs: a task and a scratchpad open.
    page.locator(f".card[data-id='{demo['ready'].id}'] button").click()
    expect(page.locator("#detail h3").first).to_contain_text("Research OAuth2 flows")
    page.get_by_role("button", name="aria_to_code").click()
    expect(page.locator("#pad-view .message")).to_have_count(1)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size < 300_000
    if os.environ.get("NEXUS_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO_ROOT / "docs" / "dashboard.png")


def test_a_card_moves_to_complete_when_its_file_changes_on_disk(
    page: Any, demo: dict[str, Any]
) -> None:
    task = demo["ready"]
    expect(card(page, "ready", task.id)).to_be_visible()
    path = demo["root"] / task.path
    path.write_text(path.read_text().replace("status: ready", "status: complete"))
    expect(card(page, "complete", task.id)).to_be_visible(timeout=3000)
    expect(page.locator(".col-complete .count")).to_have_text("6")
    expect(page.locator(".col-ready .card")).to_have_count(0)
    expect(page.locator("#events")).to_contain_text(f"{task.id} changed on disk: ready → complete")


def test_creating_a_task_from_the_page_writes_its_file_and_commits_it_as_web(
    page: Any, demo: dict[str, Any]
) -> None:
    root = demo["root"]
    page.get_by_label("Title", exact=True).fill("Rotate signing keys")
    page.get_by_label("Role", exact=True).select_option("code")
    page.get_by_label("Depends on (ids, comma-separated)").fill(demo["ready"].id)
    page.get_by_label("Acceptance criteria (one a line)").fill(
        "old keys still verify\nnew keys sign"
    )
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#form-status")).to_contain_text("created")
    task_id = page.locator("#form-status").inner_text().split()[1]
    text = next((root / "tasks").rglob(f"{task_id}.md")).read_text()
    assert "title: Rotate signing keys" in text and "new keys sign" in text
    message = git("log", "-1", "--format=%B", cwd=root)
    assert f"Nexus-Created: {task_id}" in message and "Nexus-Actor: web" in message
    expect(card(page, "pending", task_id)).to_be_visible()
    expect(page.locator("#detail h3").first).to_contain_text("Rotate signing keys")

    page.get_by_label("What to build").fill("a rate limiter")
    page.get_by_role("button", name="Start pipeline").click()
    expect(page.locator("#form-status")).to_contain_text("pipeline")
    words = page.locator("#form-status").inner_text().split()  # pipeline M: aria A → code C …
    assert words[2::3] == ["aria", "code", "alpha", "beta"]
    expect(card(page, "ready", words[3])).to_be_visible()  # the analysis can start
    for task_id in words[6::3]:
        expect(card(page, "pending", task_id)).to_be_visible()


def test_posting_a_message_appends_it_to_the_scratchpad(page: Any, demo: dict[str, Any]) -> None:
    page.get_by_label("To", exact=True).select_option("code")
    page.get_by_label("Type", exact=True).select_option("feedback")
    page.get_by_label("Message", exact=True).fill("Please use PKCE for the public client.")
    page.get_by_role("button", name="Send message").click()
    expect(page.locator("#pad-view")).to_contain_text("Please use PKCE for the public client.")
    pad = demo["root"] / "scratchpads" / "user_to_code.md"
    assert "Please use PKCE for the public client." in pad.read_text()
    assert "Nexus-Message:" in git("log", "-1", "--format=%B", cwd=demo["root"])
    expect(page.get_by_role("button", name="user_to_code")).to_be_visible()


def drag(page: Any, source: Any, column: str, dialog: Any) -> None:
    """Drag a card onto a column until the confirmation opens.  A live update that re-renders
    the board between the drag's start and its drop replaces the card element and the drop is
    lost, as it would be for a person, who drags again; so does this (at most 3 times)."""
    for _ in range(3):
        source.drag_to(page.locator(column))
        try:
            expect(dialog).to_be_visible(timeout=2000)
            return
        except AssertionError:
            page.wait_for_timeout(300)
    expect(dialog).to_be_visible()


def test_dropping_a_card_asks_first_then_moves_the_task(page: Any, demo: dict[str, Any]) -> None:
    task = demo["ready"]
    dialog = page.locator("dialog#confirm")
    drag(page, card(page, "ready", task.id), ".col-cancelled", dialog)
    expect(dialog).to_contain_text(f"cancel “Research OAuth2 flows” ({task.id}, now ready)")
    dialog.get_by_role("button", name="Cancel").click()  # changed my mind
    expect(card(page, "ready", task.id)).to_be_visible()

    drag(page, card(page, "ready", task.id), ".col-complete", dialog)
    page.locator("#confirm-extra").fill("Three flows fit.")
    dialog.get_by_role("button", name="Confirm").click()
    expect(card(page, "complete", task.id)).to_be_visible()
    text = (demo["root"] / task.path).read_text()
    assert "status: complete" in text and "Three flows fit." in text
    assert "Nexus-Actor: web" in git("log", "-1", "--format=%B", cwd=demo["root"])
    run_nexus("status", cwd=demo["root"])  # the workspace stays consistent
