"""The server's authorisation matrix: every route x every role and token state; deny by
default; Host and cross-origin checks; tokens never echoed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from tests.unit.server._support import MODEL, TestClient, infer_body, rows

from conveyor.access import ROLES, add_user, bootstrap_admin, create_token, revoke_token
from conveyor.access.roles import PUBLIC
from conveyor.server import create_app
from conveyor.server.security import ServerAccess, permission_of
from conveyor.store.metadata.schema import token as token_table

if TYPE_CHECKING:
    from tests.unit.server.conftest import Stores

    from conveyor.store.metadata import MetadataStore

#: One request per route; path parameters filled with the registry's model and version 1.
REQUESTS = {
    "/v2/health/live": ("GET", None),
    "/v2/health/ready": ("GET", None),
    "/v2": ("GET", None),
    "/v2/models/{name}": ("GET", None),
    "/v2/models/{name}/versions/{version}": ("GET", None),
    "/v2/models/{name}/ready": ("GET", None),
    "/v2/models/{name}/versions/{version}/ready": ("GET", None),
    "/v2/models/{name}/infer": ("POST", "infer"),
    "/v2/models/{name}/versions/{version}/infer": ("POST", "infer"),
    "/v2/models/{name}/feedback": ("POST", "feedback"),
    "/v2/models/{name}/invocations": ("POST", "invocations"),
    "/v2/models/{name}/versions/{version}/invocations": ("POST", "invocations"),
    "/invocations": ("POST", "invocations"),
    "/ping": ("GET", None),
    "/health": ("GET", None),
    "/metrics": ("GET", None),
    "/openapi.json": ("GET", None),
    "/api/lineage/upstream": ("GET", "node"),
    "/api/lineage/downstream": ("GET", "node"),
    "/api/lineage/models-using": ("GET", "node"),
    "/api/lineage/evaluated-on": ("GET", "evaluated"),
    "/api/lineage/at": ("GET", "at"),
    "/api/lineage/diff": ("GET", "diff"),
    "/api/models/{name}/changelog": ("GET", None),
}


def _credentials(store: MetadataStore) -> dict[str, str | None]:
    """A token per role, plus the token states that must all be refused."""
    bootstrap_admin(store, "root", actor="root")
    found: dict[str, str | None] = {"anonymous": None, "garbage": "cvr_not-a-real-token"}
    for role in ROLES:
        add_user(store, f"user-{role}", role, actor="root")
        found[role] = create_token(store, f"user-{role}", actor="root").secret
    add_user(store, "old", "admin", actor="root")
    expired = create_token(store, "old", actor="root")
    with store.write("root") as tx:
        tx.conn.execute(
            sa.update(token_table)
            .where(token_table.c.hash.startswith(expired.id))
            .values(expires_at=tx.at - dt.timedelta(seconds=1))
        )
    found["expired"] = expired.secret
    revoked = create_token(store, "old", actor="root")
    revoke_token(store, revoked.id, actor="root")
    found["revoked"] = revoked.secret
    return found


def _call(client: TestClient, path: str, secret: str | None) -> int:
    method, body = REQUESTS[path]
    url = path.replace("{name}", MODEL).replace("{version}", "1")
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    params: dict[str, str] = {}
    kwargs: dict[str, object] = {}
    if body == "infer":
        kwargs["json"] = infer_body(rows(1))
    elif body == "invocations":
        kwargs["json"] = {"dataframe_records": rows(1).to_dict("records")}
    elif body == "feedback":
        kwargs["json"] = {"id": "unknown", "label": 1}
    elif body == "node":
        params = {"node": "model:churn/1"}
    elif body == "evaluated":
        params = {"model": MODEL, "version": "1"}
    elif body == "at":
        params = {"time": "2026-01-01T00:00:00Z"}
    elif body == "diff":
        params = {"model": MODEL, "old": "1", "new": "2"}
    response = client.request(method, url, headers=headers, params=params, **kwargs)
    assert response.status_code < 500, (path, response.text)
    if response.status_code in (401, 403):
        assert secret is None or secret not in response.text  # never echoed
    return response.status_code


@pytest.mark.parametrize("inference", ["open", "token"])
def test_every_route_times_every_role_and_token_state(stores: Stores, inference: str) -> None:
    credentials = _credentials(stores.metadata)
    app = create_app(
        stores.metadata,
        stores.artifacts,
        poll_interval=60,
        access=ServerAccess(inference=inference),  # type: ignore[arg-type]
    )
    routes = {r.path: permission_of(r.endpoint) for r in app.routes}  # type: ignore[attr-defined]
    assert set(routes) == set(REQUESTS), "a route was added or removed: update the matrix"
    assert all(p is not None for p in routes.values())
    refused = {"anonymous", "garbage", "expired", "revoked"}
    with TestClient(app) as client:
        for path, permission in routes.items():
            for who, secret in credentials.items():
                status = _call(client, path, secret)
                open_route = permission == PUBLIC or (
                    permission == "predict" and inference == "open"
                )
                if open_route:
                    assert status not in (401, 403), (path, who, status)
                elif who in refused:
                    assert status == 401, (path, who, status)
                else:
                    assert permission in ROLES[who]  # every role reads and predicts today
                    assert status not in (401, 403), (path, who, status)


def test_a_route_without_a_permission_stops_the_app(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.responses import Response

    from conveyor.server import app as app_module

    async def naked(_request: object) -> Response:
        return Response("")

    original = app_module._routes

    def routes() -> list[object]:
        from starlette.routing import Route

        return [*original(), Route("/naked", naked)]

    monkeypatch.setattr(app_module, "_routes", routes)
    with pytest.raises(RuntimeError, match="declares no permission"):
        create_app(stores.metadata, stores.artifacts)


def test_foreign_host_and_cross_origin_state_changes_are_refused(stores: Stores) -> None:
    app = create_app(
        stores.metadata, stores.artifacts, poll_interval=60, allowed_hosts=["127.0.0.1"]
    )
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        assert client.get("/v2/health/live").status_code == 200
        evil = client.get("/v2/health/live", headers={"Host": "evil.example"})
        assert evil.status_code == 400
        assert "evil.example" in evil.json()["error"]
        post = f"/v2/models/{MODEL}/infer"
        body = infer_body(rows(1))
        assert client.post(post, json=body).status_code == 200
        same = client.post(post, json=body, headers={"Origin": "http://127.0.0.1:8080"})
        assert same.status_code == 200
        cross = client.post(post, json=body, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert "cross-origin" in cross.json()["error"]
        # Reading is not a state change.
        assert client.get("/v2", headers={"Origin": "https://evil.example"}).status_code == 200
