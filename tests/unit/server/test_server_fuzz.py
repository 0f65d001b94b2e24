"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

The server documents every route at ``/openapi.json`` (see :mod:`conveyor.server.openapi`);
schemathesis reads that document from the in-process ASGI app and generates requests for every
operation: valid ones (positive mode) and, for the operations with a body, invalid ones
(negative mode). Each runs once without credentials and once with an admin's bearer token.
Whatever it sends, the answer must not be a 5xx: a 500 is always a bug, and with the model
loaded nothing here may be "not ready" either.

Bounded and deterministic (``derandomize``, no example database), so it runs in seconds and
fails the same way on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from tests.unit.server._support import promote, register

from conveyor.access import bootstrap_admin, create_token
from conveyor.server import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemathesis.specs.openapi.schemas import OpenApiSchema

#: Generated requests per operation and credential: positive, then negative (bodies only).
POSITIVE_EXAMPLES = 20
NEGATIVE_EXAMPLES = 15

_SETTINGS = settings(
    max_examples=POSITIVE_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # Generation only: shrinking a failure would cost minutes; the failure list names the input.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Fuzzed:
    schema: OpenApiSchema
    token: str
    #: "METHOD /path" -> every status answered to it, per credential.
    statuses: dict[tuple[str, str], set[int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """``churn`` v1 in production and v2 registered, an admin token, and the app's schema."""
    from schemathesis.python import asgi

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    root = tmp_path_factory.mktemp("fuzz")
    metadata = MetadataStore.open(f"sqlite:///{root / 'metadata.db'}")
    artifacts = LocalArtifactStore(root / "artifacts")
    v1, _ = register(metadata, artifacts, c=1.0)
    register(metadata, artifacts, c=0.01)
    promote(metadata, v1)
    bootstrap_admin(metadata, "root", actor="root")
    token = create_token(metadata, "root", actor="root").secret
    app = create_app(metadata, artifacts, poll_interval=60)
    try:
        # Loading the document starts the app's lifespan (the model loads) once for the module.
        yield Fuzzed(schemathesis.openapi.from_asgi("/openapi.json", app), token)
    finally:
        # schemathesis keeps a started lifespan for the rest of the process; stop it here, while
        # its stores still exist.
        asgi.shutdown_lifespans()
        metadata.close()


def _fuzz(fuzzed: Fuzzed, who: str, mode: GenerationMode) -> list[str]:
    """Send generated requests to every operation; the 5xx answers, described."""
    headers = {"Authorization": f"Bearer {fuzzed.token}"} if who == "admin" else {}
    failures: list[str] = []
    for result in fuzzed.schema.get_all_operations():
        if not isinstance(result, Ok):
            pytest.fail(f"the OpenAPI document has an operation schemathesis cannot read: {result}")
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and "requestBody" not in operation.definition.raw:
            # A path or query parameter typed "string" has no invalid value to generate.
            continue
        seen = fuzzed.statuses.setdefault((who, operation.label), set())
        failures += _fuzz_operation(operation, mode, headers, seen)
    return failures


def _fuzz_operation(
    operation: Any, mode: GenerationMode, headers: dict[str, str], seen: set[int]
) -> list[str]:
    failures: list[str] = []
    examples = POSITIVE_EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES

    @settings(_SETTINGS, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        seen.add(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{operation.label} answered {response.status_code} to "
                f"path={case.path_parameters} query={case.query} body={case.body!r:.300}: "
                f"{response.text[:300]}"
            )

    run()
    return failures


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_no_generated_request_gets_a_5xx(fuzzed: Fuzzed, who: str) -> None:
    failures = _fuzz(fuzzed, who, GenerationMode.POSITIVE)
    failures += _fuzz(fuzzed, who, GenerationMode.NEGATIVE)

    assert not failures, "\n".join(failures)
    labels = {label for (by, label) in fuzzed.statuses if by == who}
    # Every route of the app was in the document, and the served model's concrete paths too.
    assert {"GET /metrics", "POST /invocations", "GET /api/lineage/upstream"} <= labels
    assert {"POST /v2/models/churn/infer", "POST /v2/models/churn/invocations"} <= labels
    management = {label for label in labels if label.split(" ", 1)[1].startswith("/api/")}
    assert len(management) == 7
    for label in management:
        statuses = fuzzed.statuses[(who, label)]
        if who == "anonymous":
            assert statuses == {401}, label  # the token is what the admin run differs by
        else:
            assert 401 not in statuses, label
    assert 200 in fuzzed.statuses[(who, "GET /v2/health/ready")]  # the model did load
