"""The lineage queries over HTTP answer what the Python API answers, and bad queries are 4xx
with the management API's error shape."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from starlette.exceptions import StarletteDeprecationWarning

from conveyor.lineage import graph as lineage
from conveyor.server import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

if TYPE_CHECKING:
    from tests.unit.lineage.conftest import History


def test_lineage_over_http(history: History) -> None:
    from conveyor.access import add_user, bootstrap_admin, create_token

    store = history.project.metadata
    bootstrap_admin(store, "ada", actor="ada")
    add_user(store, "vic", "viewer", actor="ada")
    secret = create_token(store, "vic", actor="ada").secret
    with TestClient(
        create_app(store, history.project.artifacts, poll_interval=60),
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        up = client.get("/api/lineage/upstream", params={"node": "churn/1"})
        assert up.status_code == 200, up.text
        assert up.json() == lineage.upstream(store, "model:churn/1").to_json()
        near = client.get("/api/lineage/downstream", params={"node": history.jan, "depth": 1})
        assert {n["id"] for n in near.json()["nodes"]} == {
            n.id for n in lineage.downstream(store, history.jan, depth=1).nodes
        }
        dot = client.get("/api/lineage/upstream", params={"node": "churn/1", "format": "dot"})
        assert dot.text.startswith("digraph lineage {")
        using = client.get("/api/lineage/models-using", params={"node": history.holdout})
        assert using.json()["evaluation"] == ["model:churn/1", "model:churn/3"]
        at = client.get("/api/lineage/at", params={"time": history.v2_live.isoformat()})
        assert at.json()["production"] == {"churn": 2}
        diff = client.get("/api/lineage/diff", params={"model": "churn", "old": 1, "new": 3})
        assert diff.json()["params"] == {"c": {"old": 1.0, "new": 0.5}}
        evaluated = client.get("/api/lineage/evaluated-on", params={"model": "churn", "version": 3})
        assert [d["id"] for d in evaluated.json()] == [history.holdout]
        log = client.get("/api/models/churn/changelog")
        assert log.headers["content-type"].startswith("text/markdown")
        assert log.text.startswith("# Changelog of churn")
        assert [
            v["version"]
            for v in client.get("/api/models/churn/changelog", params={"format": "json"}).json()[
                "versions"
            ]
        ] == [3, 2, 1]

        for path, params, status, code in [
            ("/api/lineage/upstream", {}, 400, "usage"),
            ("/api/lineage/upstream", {"node": "churn"}, 400, "usage"),
            ("/api/lineage/upstream", {"node": "churn/9"}, 404, "not_found"),
            ("/api/lineage/upstream", {"node": "churn/1", "depth": "x"}, 400, "usage"),
            ("/api/lineage/upstream", {"node": "churn/1", "format": "png"}, 400, "usage"),
            ("/api/lineage/at", {"time": "yesterday"}, 400, "usage"),
            ("/api/lineage/diff", {"model": "churn", "old": 1, "new": 9}, 404, "not_found"),
            ("/api/models/nope/changelog", {}, 404, "not_found"),
        ]:
            response = client.get(path, params=params)
            assert response.status_code == status, (path, params, response.text)
            error = response.json()["error"]
            assert error["code"] == code
            assert error["message"]
