"""Path traversal: every route that takes a model name, version, lineage node or name filter,
fed every usual encoding of a way out of the store; and the artifact store itself.

Requests go to the ASGI app as raw bytes (the scope a server such as uvicorn builds: the target
percent-decoded once, never normalised), because an HTTP client library would collapse ``..``
segments before the app saw them. A sentinel file sits next to the stores, outside both; its
content must appear in no answer, and no request may add, change or remove a file anywhere
under the test's folder (the SQLite database's own files aside).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import pytest
from tests.unit.server._support import MODEL, TestClient, infer_body, promote, register, rows

from conveyor.access import bootstrap_admin, create_token
from conveyor.core.digest import digest_bytes
from conveyor.core.errors import IntegrityError, ValidationError
from conveyor.server import create_app
from conveyor.store.artifacts import LocalArtifactStore, MemoryArtifactStore
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.store.artifacts import ArtifactStore

#: Routes with the payload where a name or version goes, and the body each one takes.
PATH_ROUTES = [
    ("GET", "/v2/models/{p}", None),
    ("GET", "/v2/models/{p}/ready", None),
    ("GET", "/v2/models/{p}/versions/1", None),
    ("GET", "/v2/models/{p}/versions/1/ready", None),
    ("POST", "/v2/models/{p}/infer", "infer"),
    ("POST", "/v2/models/{p}/versions/1/infer", "infer"),
    ("POST", "/v2/models/{p}/feedback", "feedback"),
    ("POST", "/v2/models/{p}/invocations", "invocations"),
    ("POST", "/v2/models/{p}/versions/1/invocations", "invocations"),
    ("GET", f"/v2/models/{MODEL}/versions/{{p}}", None),
    ("GET", f"/v2/models/{MODEL}/versions/{{p}}/ready", None),
    ("POST", f"/v2/models/{MODEL}/versions/{{p}}/infer", "infer"),
    ("POST", f"/v2/models/{MODEL}/versions/{{p}}/invocations", "invocations"),
    ("GET", "/api/models/{p}/changelog", None),
]
#: The management API's query parameters that name a model, version or node.
QUERY_ROUTES = [
    "/api/lineage/upstream?node={p}",
    "/api/lineage/upstream?node=model:{p}/1",
    "/api/lineage/upstream?node=dataset:{p}",
    "/api/lineage/downstream?node={p}",
    "/api/lineage/models-using?node={p}",
    "/api/lineage/evaluated-on?model={p}&version=1",
    f"/api/lineage/evaluated-on?model={MODEL}&version={{p}}",
    "/api/lineage/diff?model={p}&old=1&new=2",
    f"/api/lineage/diff?model={MODEL}&old={{p}}&new=2",
    f"/api/models/{MODEL}/changelog?format={{p}}",
    "/api/lineage/at?time=2026-01-01T00:00:00Z&model={p}",
]


def payloads(sentinel: PurePath) -> dict[str, str]:
    """Ways to name ``sentinel`` from inside a store, as they appear on the wire."""
    climb = "../" * 12 + str(sentinel).lstrip("/")  # from any folder up to / and down again
    return {
        "dot-dot": climb,
        "dot-dot-encoded-slash": climb.replace("/", "%2f"),
        "encoded": quote(climb, safe="").replace(".", "%2e"),
        "double-encoded": quote(quote(climb, safe="").replace(".", "%2e"), safe=""),
        "backslash": climb.replace("/", "\\"),
        "backslash-encoded": climb.replace("/", "%5c"),
        "nul": f"{MODEL}%00{climb}",
        "nul-suffix": f"{MODEL}%00",
        "absolute": str(sentinel),
        "absolute-encoded": quote(str(sentinel), safe=""),
        "etc-passwd": "/etc/passwd",
        "dot": ".",
        "dot-dot-only": "..",
    }


#: The payload forms, by name.
FORMS = list(payloads(PurePosixPath("/x")))


def call(
    client: TestClient, method: str, target: str, body: bytes, token: str
) -> tuple[int, bytes]:
    """Send ``target`` to the app exactly as written (the scope uvicorn would build)."""
    path, _, query = target.partition("?")
    raw = path.encode("latin-1")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path, encoding="latin-1"),
        "raw_path": raw,
        "root_path": "",
        "query_string": query.encode("latin-1"),
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    assert client.portal is not None
    app: Any = client.app
    client.portal.call(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (not following links) -> (size, mtime); SQLite's own files
    are left out, since a read may touch them."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if name.startswith("metadata.db"):
                continue
            st = os.lstat(path)
            found[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return found


class Setup:
    """``churn`` v1 in production and v2 registered, a sentinel file outside the stores,
    and an admin token."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        outside = tmp / "outside"
        outside.mkdir()
        self.secret = f"SENTINEL-{uuid.uuid4().hex}"
        self.sentinel = outside / "secret.txt"
        self.sentinel.write_text(self.secret)
        root = tmp / "root"
        self.metadata = MetadataStore.open(f"sqlite:///{root / 'metadata.db'}")
        self.artifacts = LocalArtifactStore(root / "artifacts")
        v1, self.b1 = register(self.metadata, self.artifacts, c=1.0)
        self.v2, self.b2 = register(self.metadata, self.artifacts, c=0.01)
        promote(self.metadata, v1)
        bootstrap_admin(self.metadata, "root", actor="root")
        self.token = create_token(self.metadata, "root", actor="root").secret


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    found = Setup(tmp_path_factory.mktemp("traversal"))
    yield found
    found.metadata.close()


@pytest.fixture(scope="module")
def client(setup: Setup) -> Iterator[TestClient]:
    app = create_app(setup.metadata, setup.artifacts, poll_interval=60)
    with TestClient(app) as client:
        yield client


def _body(kind: str | None) -> bytes:
    if kind == "infer":
        return json.dumps(infer_body(rows(1))).encode()
    if kind == "invocations":
        return json.dumps({"dataframe_records": rows(1).to_dict("records")}).encode()
    if kind == "feedback":
        return b'{"id": "x", "label": 1}'
    return b""


def _answers(
    setup: Setup, client: TestClient, requests: list[tuple[str, str, bytes]]
) -> list[tuple[str, int, bytes]]:
    before = tree(setup.tmp)
    answered = []
    for method, target, body in requests:
        status, content = call(client, method, target, body, setup.token)
        answered.append((f"{method} {target}", status, content))
        assert setup.secret.encode() not in content, target
        assert b"root:x:0:0" not in content, target
    assert tree(setup.tmp) == before, "a request changed a file"
    assert setup.sentinel.read_text() == setup.secret
    return answered


@pytest.mark.parametrize("form", FORMS)
def test_traversal_in_a_name_or_version_is_a_4xx_and_reads_nothing(
    setup: Setup, client: TestClient, form: str
) -> None:
    payload = payloads(setup.sentinel)[form]
    requests = [
        (method, template.replace("{p}", payload), _body(kind))
        for method, template, kind in PATH_ROUTES
    ]
    requests += [("GET", template.replace("{p}", payload), b"") for template in QUERY_ROUTES]

    for target, status, content in _answers(setup, client, requests):
        assert 400 <= status < 500, (target, status, content[:300])


@pytest.mark.parametrize(
    "digest",
    [
        "blake3:../../outside/secret.txt",
        "blake3:" + "0" * 64 + "/../../../outside/secret.txt",
        "blake3:" + "../" * 21 + "x",
        "blake3:%2e%2e%2f" + "0" * 55,
        "blake3:..\\..\\" + "0" * 58,
        "blake3:" + "0" * 63 + "\x00",
        "blake3:" + "0" * 64 + "\n",
        "/etc/passwd",
        "../" * 4 + "etc/passwd",
        "blake3:" + "A" * 64,  # the rule is lowercase hex; anything else is not a name
    ],
)
@pytest.mark.parametrize("kind", ["local", "memory"])
def test_the_artifact_store_refuses_a_digest_that_is_not_one(
    tmp_path: Path, digest: str, kind: str
) -> None:
    store: ArtifactStore = (
        LocalArtifactStore(tmp_path / "store") if kind == "local" else MemoryArtifactStore()
    )
    store.put_bytes(b"something")
    before = tree(tmp_path)

    for read in (store.get_bytes, store.exists, store.location):
        with pytest.raises(ValidationError, match="is not a digest"):
            read(digest)
    with pytest.raises(ValidationError, match="is not a digest"):
        store.get_file(digest, tmp_path / "out")
    assert tree(tmp_path) == before


def test_a_store_object_linked_outside_the_root_is_refused_not_read(tmp_path: Path) -> None:
    """A symlink planted in the store in place of an object is refused before it is opened
    (behind it could be any file, /dev/zero included); neither the store nor the server
    returns what it points to, and the intact production version keeps answering."""
    setup = Setup(tmp_path)
    manifest = setup.b2.digest
    path = setup.artifacts.location(manifest)
    os.chmod(path, 0o644)
    os.remove(path)
    os.symlink(setup.sentinel, path)

    for read in (setup.artifacts.get_bytes, setup.artifacts.exists):
        with pytest.raises(IntegrityError, match="through a symbolic link") as caught:
            read(manifest)
        assert setup.secret not in str(caught.value)
    with pytest.raises(IntegrityError, match="through a symbolic link"):
        setup.artifacts.get_file(manifest, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()

    app = create_app(setup.metadata, setup.artifacts, poll_interval=60)
    with TestClient(app) as client:
        answered = _answers(
            setup,
            client,
            [
                ("GET", f"/v2/models/{MODEL}/versions/{setup.v2}", b""),
                ("POST", f"/v2/models/{MODEL}/versions/{setup.v2}/infer", _body("infer")),
                ("GET", f"/api/models/{MODEL}/changelog?format=json", b""),
            ],
        )
        # The version behind the link cannot load: an integrity failure (503), as for any
        # corrupt bundle.
        assert [status for _, status, _ in answered[:2]] == [503, 503]
        assert b"through a symbolic link" in answered[0][2]
        assert answered[2][1] == 200
        assert call(client, "POST", f"/v2/models/{MODEL}/infer", _body("infer"), "")[0] == 200
    setup.metadata.close()


def test_a_store_folder_linked_outside_the_root_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalArtifactStore(tmp_path / "store")
    data = b"bytes whose fan-out folder is a link"
    hexdigest = digest_bytes(data).split(":", 1)[1]
    (tmp_path / "store" / "blake3").mkdir(parents=True)
    os.symlink(outside, tmp_path / "store" / "blake3" / hexdigest[:2])
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    with pytest.raises(IntegrityError, match="through a symbolic link"):
        store.put_bytes(data)
    with pytest.raises(IntegrityError, match="through a symbolic link"):
        store.put_file(source)
    assert list(outside.iterdir()) == []


#: Names that break the one rule but route to the handlers (no ``/`` in them).
INVALID_NAMES = ["..", "churn..x", "-churn", ".churn", "churn%00", "a%20b", "churn%5cx", "x" * 129]
#: The routes whose ``{p}`` is a model name, in the path or a query parameter.
NAME_ROUTES = [
    (method, template, kind)
    for method, template, kind in PATH_ROUTES
    if template.startswith(("/v2/models/{p}", "/api/models/{p}"))
] + [
    ("GET", template, None)
    for template in QUERY_ROUTES
    if "model={p}" in template or "/api/models/{p}" in template
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_a_model_name_outside_the_rule_is_a_422_naming_the_rule(
    setup: Setup, client: TestClient, name: str
) -> None:
    requests = [
        (method, template.replace("{p}", name), _body(kind))
        for method, template, kind in NAME_ROUTES
    ]
    assert len(requests) == 13

    for target, status, content in _answers(setup, client, requests):
        assert status == 422, (target, status, content[:300])
        assert b"is not valid" in content, target
        assert b"1-128 letters, digits" in content, target


def test_a_valid_but_unknown_model_name_is_still_a_404(setup: Setup, client: TestClient) -> None:
    requests = [
        (method, template.replace("{p}", "nosuch"), _body(kind))
        for method, template, kind in NAME_ROUTES
        if template.startswith("/v2/")
    ]
    for target, status, content in _answers(setup, client, requests):
        assert status == 404, (target, status, content[:300])
