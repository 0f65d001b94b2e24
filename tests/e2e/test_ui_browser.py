"""The dashboard in a real headless Chromium (Playwright), against ``conveyor ui``'s app served
by uvicorn on loopback over a store with realistic history (``tests/unit/ui/_ui_data``).

Each page must show its data; approve and abort must work for the roles allowed to take them
and be refused for a viewer; screenshots of the main pages are written to
``docs/screenshots/`` (the README shows two) and to the test's temporary folder.

Chromium is Debian's (``apt-get install chromium``), driven through ``executable_path``:
``playwright install`` is never needed.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from conveyor.cli.ui import dashboard_app
from conveyor.deploy import read_routing
from conveyor.registry import list_reviews
from conveyor.server.serve import listen
from tests.unit.ui._ui_data import Built, build_project

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class _Server:
    """``conveyor ui``'s app on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, built: Built) -> None:
        # The socket listens before uvicorn runs: the kernel queues early connections, so no
        # wait for "started" is needed.
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = dashboard_app(built.project, "127.0.0.1")
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    result = build_project(tmp_path_factory.mktemp("ui-project"))
    yield result
    result.project.close()


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[_Server]:
    running = _Server(built)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _signed_in(browser: Browser, server: _Server, token: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.goto(f"{server.url}/ui/deployments")
    assert "/ui/login" in page.url  # a page visit without a session goes to the login form
    page.fill("input[name=token]", token)
    page.click("form.login button")
    assert page.url == f"{server.url}/ui/deployments"  # back where the visit started
    return page


def _shoot(page: Page, name: str, tmp_path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    shutil.copyfile(target, SCREENSHOTS / f"{name}.png")
    assert target.stat().st_size > 10_000


def test_login_refuses_a_bad_token_and_keeps_the_cookie_from_scripts(
    browser: Browser, server: _Server, built: Built
) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/ui/")
    page.fill("input[name=token]", "cvr_not-a-token")
    page.click("form.login button")
    assert "not valid" in page.inner_text("#login-error")
    page.fill("input[name=token]", built.tokens["viewer"])
    page.click("form.login button")
    assert page.inner_text("#whoami") == "victor (viewer)"
    cookie = next(c for c in page.context.cookies() if c["name"] == "conveyor_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts on the page
    page.context.close()


def test_every_page_renders_its_data(
    browser: Browser, server: _Server, built: Built, tmp_path: Path
) -> None:
    page = _signed_in(browser, server, built.tokens["viewer"])

    page.goto(f"{server.url}/ui/")
    churn = page.locator("#models tr[data-model=churn]")
    assert churn.locator("td.production").inner_text() == "v1"
    assert "candidate 2" in churn.inner_text()
    assert "experimental 1" in churn.inner_text()
    assert "failing: roc_auc >= 0.75" in churn.inner_text()  # v4's candidate gate failed
    assert page.locator("#models tr[data-model=fraud] td.production").inner_text() == "v1"
    _shoot(page, "models", tmp_path)

    page.goto(f"{server.url}/ui/models/churn/versions/2")
    row = page.locator("#comparisons tr[data-metric=roc_auc]")
    assert "95% [+0.012, +0.047]" in row.inner_text()
    assert "delong, n=2000" in row.inner_text()
    bins = [b for b in built.evaluation_report["calibration"]["bins"] if b["count"]]
    points = page.locator("svg.reliability circle.bin")
    assert points.count() == len(bins)
    assert [
        float(points.nth(i).get_attribute("data-fraction-positive") or "nan")
        for i in range(len(bins))
    ] == [b["fraction_positive"] for b in bins]
    groups = built.evaluation_report["fairness"]["gender"]["groups"]
    for name, values in groups.items():
        bar = page.locator(f'svg.fairness g[data-group="{name}"] rect[data-metric=selection_rate]')
        assert float(bar.get_attribute("data-value") or "nan") == values["selection_rate"]
    waiting = page.locator("section.attempt[data-outcome='waiting for review']")
    assert waiting.count() == 1
    assert "waiting for 1 more approval" in waiting.inner_text()
    assert page.locator("#approve").is_visible()
    assert "v2" in page.inner_text("pre.changelog")
    _shoot(page, "version", tmp_path)

    page.goto(f"{server.url}/ui/deployments")
    canary = page.locator("#rollout-1")
    assert canary.get_attribute("data-phase") == "progressing"
    assert "stable v1 75%" in canary.inner_text()
    assert "canary v3 25%" in canary.inner_text()
    assert "to step 25 after an analysis that said pass" in canary.inner_text()
    errors = canary.locator('svg[data-title^="error rate"] g.series')
    assert sorted(
        errors.nth(i).get_attribute("data-series") or "" for i in range(errors.count())
    ) == [
        "candidate v3",
        "stable v1",
    ]
    assert canary.locator('svg[data-title^="error rate"] circle').count() == 12
    shadow = page.locator("#rollout-2")
    assert shadow.get_attribute("data-phase") == "aborted"
    assert "shadow disagrees too often" in shadow.inner_text()
    assert shadow.locator('svg[data-title="shadow agreement"] circle').count() == 3
    assert "Shadow agreement 90% over 600 comparisons" in shadow.inner_text()
    verdicts = shadow.locator("table.analyses[data-step=shadow] td.wait")
    assert verdicts.all_inner_texts() == ["inconclusive"]
    _shoot(page, "deployments", tmp_path)

    page.goto(f"{server.url}/ui/data")
    drift = page.locator("section.drift[data-model=churn]")
    series = drift.locator("g.series")
    assert sorted(series.nth(i).get_attribute("data-series") or "" for i in range(3)) == [
        "age",
        "plan",
        "tenure",
    ]
    assert "75% of the columns drifted: age, tenure" in drift.inner_text()
    assert "FAILED" in page.inner_text("#data-checks")
    _shoot(page, "data", tmp_path)

    page.goto(f"{server.url}/ui/monitoring")
    assert page.locator("table.alerts[data-state=firing] tr[data-rule=feature-drift]").count() == 1
    assert page.locator("table.alerts[data-state=pending] tr[data-rule=slow]").count() == 1
    incidents = page.locator("section.incident")
    assert incidents.count() == 2
    assert "timeline" in (incidents.first.inner_html())
    _shoot(page, "monitoring", tmp_path)

    page.goto(f"{server.url}/ui/audit")
    assert page.inner_text("#chain").startswith("The chain is intact")
    page.fill("input[name=action]", "rollout.")
    page.click("form.filters button")
    actions = page.locator("#audit tr[data-action]")
    assert actions.count() >= 4
    assert all(
        (actions.nth(i).get_attribute("data-action") or "").startswith("rollout.")
        for i in range(actions.count())
    )
    _shoot(page, "audit", tmp_path)
    page.context.close()


def test_a_viewer_cannot_approve_or_abort(browser: Browser, server: _Server, built: Built) -> None:
    page = _signed_in(browser, server, built.tokens["viewer"])
    page.goto(f"{server.url}/ui/models/churn/versions/2")
    with page.expect_response(re.compile(r"/review$")) as answer:
        page.click("#approve")
    assert answer.value.status == 403
    assert "needs the permission 'review'" in page.inner_text("#error-message")
    with built.project.metadata.read() as conn:
        assert list_reviews(conn, "churn", 2) == []

    page.goto(f"{server.url}/ui/deployments")
    with page.expect_response(re.compile(r"/abort$")) as answer:
        page.click("#abort-churn")
    assert answer.value.status == 403
    assert "needs the permission 'deploy'" in page.inner_text("#error-message")
    assert read_routing(built.project.metadata)["churn"].canary_weight == 25.0
    page.context.close()


def test_an_approver_approves(browser: Browser, server: _Server, built: Built) -> None:
    page = _signed_in(browser, server, built.tokens["approver"])
    page.goto(f"{server.url}/ui/models/churn/versions/2")
    page.fill("#review-form input[name=comment]", "CI clears the margin")
    page.click("#approve")
    assert page.url.endswith("/ui/models/churn/versions/2?done=approve")
    row = page.locator("#reviews tr[data-user=alice]")
    assert row.get_attribute("data-decision") == "approve"
    with built.project.metadata.read() as conn:
        reviews = list_reviews(conn, "churn", 2)
    assert [(r.user, r.decision, r.stage, r.comment) for r in reviews] == [
        ("alice", "approve", "production", "CI clears the margin")
    ]
    page.context.close()


def test_a_deployer_aborts_a_rollout(browser: Browser, server: _Server, built: Built) -> None:
    page = _signed_in(browser, server, built.tokens["deployer"])
    page.fill("#rollout-1 input[name=reason]", "latency looks off")
    page.click("#abort-churn")
    assert page.locator("#rollout-1").get_attribute("data-phase") == "aborted"
    routing = read_routing(built.project.metadata)["churn"]
    assert routing.canary_weight == 0.0
    with built.project.metadata.read() as conn:
        last = conn.exec_driver_sql(
            "SELECT actor, action, payload FROM audit_event ORDER BY seq DESC LIMIT 1"
        ).one()
    payload: dict[str, Any] = json.loads(last.payload)
    assert (last.actor, last.action, payload["reason"]) == (
        "dora",
        "rollout.aborted",
        "aborted by dora: latency looks off",
    )
    page.context.close()


def test_a_cross_site_form_is_refused(server: _Server, built: Built) -> None:
    import httpx

    with httpx.Client(base_url=server.url) as client:
        answer = client.post(
            "/ui/deployments/churn/pause",
            data={"csrf": "x"},
            headers={
                "origin": "http://evil.example",
                "authorization": f"Bearer {built.tokens['deployer']}",
            },
        )
        assert answer.status_code == 403
        forged = client.post(
            "/ui/deployments/churn/pause",
            data={"csrf": "0" * 64},
            headers={"authorization": f"Bearer {built.tokens['deployer']}"},
        )
        assert forged.status_code == 403
        assert "CSRF token" in forged.text
