"""The dashboard in-process (Starlette's TestClient) over a store with realistic history:
permissions, sign-in, CSRF, every page's data, pagination, and the actions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from tests.conftest import postgres_url
from tests.unit.ui._ui_data import Built, build_project, register

import conveyor.ui
from conveyor.access import PUBLIC, ROLES
from conveyor.cli.ui import dashboard_app
from conveyor.deploy import read_routing
from conveyor.registry import list_reviews
from conveyor.ui import app as ui_module
from conveyor.ui._auth import COOKIE, permission_of, requires

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request
    from starlette.responses import Response


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    store = _fresh_postgres() if request.param == "postgresql" else None
    result = build_project(tmp_path_factory.mktemp("ui"), store)
    # A model with many versions, for the pagination.
    for n in range(120):
        register(result.project.metadata, "bulk", f"v{n}", 0.8)
    yield result
    result.project.close()


def _fresh_postgres() -> str:
    """An empty database of the dashboard's tests' own on the test server (``conveyor_ui``)."""
    url = sa.make_url(postgres_url())
    url = url.set(database=f"conveyor_ui{(url.database or '').removeprefix('conveyor_test')}")
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture
def client(built: Built) -> Iterator[TestClient]:
    with TestClient(dashboard_app(built.project, "127.0.0.1"), base_url="http://127.0.0.1") as c:
        yield c


def _as(client: TestClient, built: Built, role: str) -> TestClient:
    client.headers["authorization"] = f"Bearer {built.tokens[role]}"
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found is not None
    return found.group(1)


def test_exports() -> None:
    assert conveyor.ui.__all__ == sorted(conveyor.ui.__all__)
    assert all(hasattr(conveyor.ui, name) for name in conveyor.ui.__all__)


def test_every_route_declares_a_permission_and_one_without_is_refused(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = {path: permission_of(endpoint) for path, endpoint, _ in ui_module._ROUTES}
    assert None not in declared.values()
    assert {p for p, perm in declared.items() if perm == PUBLIC} == {
        "/login",
        "/logout",
        "/static/conveyor.css",
    }
    assert declared["/models/{name}/versions/{version:int}/review"] == "review"
    assert declared["/deployments/{name}/abort"] == "deploy"
    assert declared["/models/{name}/rollback"] == "rollback"

    async def undeclared(_request: Request) -> Response:
        raise AssertionError("never called")

    monkeypatch.setattr(ui_module, "_ROUTES", [*ui_module._ROUTES, ("/x", undeclared, ["GET"])])
    with pytest.raises(RuntimeError, match="undeclared declares no permission"):
        ui_module.ui_app(built.project)
    assert permission_of(requires("read")(undeclared)) == "read"


def test_a_visit_without_a_session_goes_to_the_login_form(client: TestClient) -> None:
    answer = client.get("/ui/models/churn?page=2", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/models/churn%3Fpage%3D2"
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    refused = client.post("/ui/deployments/churn/abort", data={"csrf": "x"})
    assert refused.status_code == 401
    assert "needs a bearer token" in refused.text


def test_sign_in_sets_a_strict_http_only_cookie(client: TestClient, built: Built) -> None:
    bad = client.post("/ui/login", data={"token": "cvr_nope", "next": "/ui/"})
    assert bad.status_code == 401
    assert "the bearer token is not valid" in bad.text
    good = client.post(
        "/ui/login",
        data={"token": built.tokens["viewer"], "next": "/ui/data"},
        follow_redirects=False,
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/ui/data"
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={built.tokens['viewer']};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui/" in cookie
    assert "victor (viewer)" in client.get("/ui/data").text
    out = client.post("/ui/logout", follow_redirects=False)
    assert f'{COOKIE}=""' in out.headers["set-cookie"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/elsewhere"])
def test_sign_in_never_sends_the_browser_off_the_dashboard(
    client: TestClient, built: Built, target: str
) -> None:
    answer = client.post(
        "/ui/login", data={"token": built.tokens["viewer"], "next": target}, follow_redirects=False
    )
    assert answer.headers["location"] == "/ui/"


def test_models_page(client: TestClient, built: Built) -> None:
    html = _as(client, built, "viewer").get("/ui/").text
    churn = html[html.index('data-model="churn"') : html.index('data-model="fraud"')]
    assert 'href="/ui/models/churn/versions/1">v1</a>' in churn
    assert "candidate</span> 2" in churn
    assert "failing: roc_auc &gt;= 0.75" in churn  # v4, the latest, failed its candidate gate
    bulk = html[html.index('data-model="bulk"') : html.index('data-model="churn"')]
    assert "<td>120</td>" in bulk


def test_model_page_is_paginated_newest_first(client: TestClient, built: Built) -> None:
    _as(client, built, "viewer")
    first = client.get("/ui/models/bulk").text
    rows = re.findall(r'<tr data-version="(\d+)">', first)
    assert rows == [str(v) for v in range(120, 70, -1)]
    assert "Page 1 of 3" in first
    assert 'href="?page=2" rel="next"' in first
    last = client.get("/ui/models/bulk?page=3").text
    assert re.findall(r'<tr data-version="(\d+)">', last) == [str(v) for v in range(20, 0, -1)]
    assert 'rel="next"' not in last
    beyond = client.get("/ui/models/bulk?page=99").text  # clamped to the last page
    assert "Page 3 of 3" in beyond
    assert client.get("/ui/models/bulk?page=two").status_code == 400


def test_version_page(client: TestClient, built: Built) -> None:
    html = _as(client, built, "viewer").get("/ui/models/churn/versions/2").text
    assert 'data-ci-low="0.012" data-ci-high="0.047"' in html
    assert "95% [+0.012, +0.047]" in html
    # metrics against production v1: the registered numbers and their difference
    row = re.search(r'<tr data-metric="roc_auc"><td>roc_auc</td>(.*?)</tr>', html)
    assert row is not None
    assert row.group(1) == "<td>0.84</td><td>0.81</td><td>0.03</td>"
    assert html.count('class="bin"') == sum(
        1 for b in built.evaluation_report["calibration"]["bins"] if b["count"]
    )
    assert 'data-attribute="gender"' in html
    assert 'data-outcome="waiting for review"' in html
    assert 'id="approve"' in html
    assert "your role cannot review" in html
    assert '<g class="node focus" data-node="model:churn/2">' in html  # the lineage graph
    assert "## v2 — candidate" in html  # its changelog entry


def test_unknown_and_invalid_names_are_pages_not_tracebacks(
    client: TestClient, built: Built
) -> None:
    _as(client, built, "viewer")
    missing = client.get("/ui/models/nope")
    assert missing.status_code == 404
    assert "no model named &#39;nope&#39;" in missing.text
    assert client.get("/ui/models/churn/versions/99").status_code == 404
    assert client.get("/ui/models/Bad%20Name").status_code == 422


def test_deployments_monitoring_data_pages(client: TestClient, built: Built) -> None:
    _as(client, built, "viewer")
    deployments = client.get("/ui/deployments").text
    assert 'id="rollout-1" data-model="churn" data-phase="progressing"' in deployments
    assert 'data-label="canary v3" data-share="0.25"' in deployments
    monitoring = client.get("/ui/monitoring").text
    assert 'data-state="firing"' in monitoring
    assert 'data-rule="feature-drift"' in monitoring
    assert "rollout of fraud v2 aborted" in monitoring
    data = client.get("/ui/data").text
    assert 'data-series="age"' in data
    assert "FAILED" in data


def test_audit_page_filters_and_pages(client: TestClient, built: Built) -> None:
    _as(client, built, "viewer")
    html = client.get("/ui/audit").text
    assert "The chain is intact" in html
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', html)]
    assert seqs == sorted(seqs, reverse=True)
    assert len(seqs) == 50
    older = client.get(f"/ui/audit?before={seqs[-1]}").text
    assert int(re.findall(r'<tr data-seq="(\d+)"', older)[0]) == seqs[-1] - 1
    only = client.get("/ui/audit?action=model.approved&actor=alice").text
    actions = set(re.findall(r'data-action="([^"]+)"', only))
    assert actions == {"model.approved"}


def test_actions_need_the_sessions_csrf_token_and_the_permission(
    client: TestClient, built: Built
) -> None:
    page = _as(client, built, "approver").get("/ui/models/churn/versions/2").text
    token = _csrf(page)
    form = {"stage": "production", "decision": "reject", "comment": "no"}
    forged = client.post("/ui/models/churn/versions/2/review", data={**form, "csrf": "0" * 64})
    assert forged.status_code == 403
    assert "CSRF token is not this session" in forged.text
    viewer_token = _csrf(_as(client, built, "viewer").get("/ui/models/churn/versions/2").text)
    refused = client.post("/ui/models/churn/versions/2/review", data={**form, "csrf": viewer_token})
    assert refused.status_code == 403
    assert "needs the permission &#39;review&#39; (approver, admin)" in refused.text
    with built.project.metadata.read() as conn:
        assert list_reviews(conn, "churn", 2) == []
    # Another session's token does not carry over to the approver's; their own does.
    _as(client, built, "approver")
    url = "/ui/models/churn/versions/2/review"
    assert client.post(url, data={**form, "csrf": viewer_token}).status_code == 403
    done = client.post(url, data={**form, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/models/churn/versions/2?done=reject"
    with built.project.metadata.read() as conn:
        reviews = list_reviews(conn, "churn", 2)
    assert [(r.user, r.decision, r.comment) for r in reviews] == [("alice", "reject", "no")]


def test_pause_and_a_refused_rollback(client: TestClient, built: Built) -> None:
    token = _csrf(_as(client, built, "deployer").get("/ui/deployments").text)
    paused = client.post(
        "/ui/deployments/churn/pause", data={"csrf": token}, follow_redirects=False
    )
    assert paused.status_code == 303
    assert paused.headers["location"] == "/ui/deployments?done=pause"
    assert 'data-model="churn" data-phase="paused"' in client.get("/ui/deployments").text
    assert read_routing(built.project.metadata)["churn"].canary_weight == 25.0
    nothing = client.post("/ui/models/fraud/rollback", data={"csrf": token, "reason": "test"})
    assert nothing.status_code == 409  # the service's refusal, as a page
    assert 'id="error-message"' in nothing.text
    wrong = client.post("/ui/models/fraud/rollback", json={"csrf": token})
    assert wrong.status_code == 400


def test_conveyor_ui_answers_only_loopback_names_on_a_loopback_address(built: Built) -> None:
    local = TestClient(dashboard_app(built.project, "127.0.0.1"), base_url="http://example.com")
    assert local.get("/ui/login").status_code == 400  # no DNS rebinding onto the dashboard
    open_to_all = TestClient(dashboard_app(built.project, "0.0.0.0"), base_url="http://example.com")
    assert open_to_all.get("/ui/login").status_code == 200


def test_every_route_times_every_role(client: TestClient, built: Built) -> None:
    """Pages open for every role; an action reaches its CSRF check (past the permission) only
    for the roles with its permission; without a session, pages go to the login form."""
    concrete = {
        "/models/{name}": "/models/churn",
        "/models/{name}/versions/{version:int}": "/models/churn/versions/2",
        "/models/{name}/versions/{version:int}/review": "/models/churn/versions/2/review",
        "/models/{name}/rollback": "/models/churn/rollback",
        "/deployments/{name}/pause": "/deployments/churn/pause",
        "/deployments/{name}/abort": "/deployments/churn/abort",
    }
    for path, endpoint, methods in ui_module._ROUTES:
        permission = permission_of(endpoint)
        url = "/ui" + concrete.get(path, path)
        if permission == PUBLIC:
            continue
        client.headers.pop("authorization", None)
        anonymous = client.request(methods[0], url, follow_redirects=False)
        assert anonymous.status_code == (303 if methods == ["GET"] else 401), url
        for role in ("viewer", "scientist", "approver", "deployer"):
            answer = _as(client, built, role).request(methods[0], url, data={"comment": "x"})
            if methods == ["GET"]:
                assert answer.status_code == 200, (url, role)
            elif permission in ROLES[role]:
                assert answer.status_code == 403, (url, role)
                assert "CSRF token" in answer.text, (url, role)
            else:
                assert answer.status_code == 403, (url, role)
                assert f"needs the permission &#39;{permission}&#39;" in answer.text, (url, role)
