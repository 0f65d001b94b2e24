"""Supply-chain safety of loading: no pickle anywhere, no type the packager did not trust, no
byte that does not match its digest.

Each hostile payload here does something visible when it runs (it creates a marker), and a
control shows that it really would run if handed to the loader it targets; the test then shows
that Conveyor refuses it and the marker stays absent. Conveyor has no switch to let an owner opt
in to pickled models: there is no pickle loader to switch on.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from sklearn.linear_model import LogisticRegression
from tests.unit.server._support import MODEL, TestClient, infer_body, promote, register, rows

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import IntegrityError, ValidationError
from conveyor.packaging import Model, build_bundle, dump_estimator, load_bundle, load_estimator
from conveyor.server import create_app
from conveyor.store.artifacts import LocalArtifactStore, MemoryArtifactStore

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from conveyor.packaging import Bundle
    from conveyor.store.artifacts import ArtifactStore

MODEL_FILE = "model/model.skops"


class _PickleBomb:
    """Unpickling it creates the folder ``marker`` (``os.mkdir`` is reached by reference, so
    the payload works in any process that unpickles it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


class _Planter:
    """Restoring it creates the file ``marker``: skops calls ``__setstate__`` when it builds an
    object of a trusted type."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __getstate__(self) -> dict[str, str]:
        return {"marker": self.marker}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.marker = state["marker"]
        with open(self.marker, "w") as fh:
            fh.write("ran")


def _swap_model_file(store: ArtifactStore, bundle: Bundle, data: bytes) -> str:
    """A bundle like ``bundle`` whose manifest lists ``data`` (stored, with its true digest)
    as the model file: what someone who can write the store and the manifest would make."""
    ref = store.put_bytes(data)
    files = {**bundle.manifest.files, MODEL_FILE: ref}
    return store.put_bytes(replace(bundle.manifest, files=files).to_yaml()).digest


def test_a_pickle_as_the_model_file_is_refused_without_running(
    tmp_path: Path, model: Model
) -> None:
    control, marker = tmp_path / "control", tmp_path / "pwned"
    pickle.loads(pickle.dumps(_PickleBomb(control)))  # the control: the payload is live
    assert control.exists()
    store = MemoryArtifactStore()
    bundle = build_bundle(store, model, name="churn", metrics={})
    hostile = _swap_model_file(store, bundle, pickle.dumps(_PickleBomb(marker)))

    with pytest.raises(ValidationError, match=rf"{MODEL_FILE} of model bundle .* cannot be loaded"):
        load_bundle(store, hostile)
    assert not marker.exists()
    # The same refusal for the pickle handed to the estimator loader directly.
    with pytest.raises(ValidationError, match="cannot be loaded"):
        load_estimator(pickle.dumps(_PickleBomb(marker)), [], what=MODEL_FILE)
    assert not marker.exists()


def test_an_untrusted_type_in_the_model_file_is_refused_by_name(
    tmp_path: Path, model: Model, frame: pd.DataFrame
) -> None:
    control, marker = tmp_path / "control", tmp_path / "pwned"
    type_name = f"{__name__}._Planter"
    planted = LogisticRegression().fit(frame[["age"]], frame["plan"] == "pro")
    planted.extra_ = _Planter(str(control))
    saved = dump_estimator(planted)
    assert saved.trusted == (type_name,)
    load_estimator(saved.data, saved.trusted, what="control")  # trusted, it runs
    assert control.exists()
    planted.extra_ = _Planter(str(marker))
    store = MemoryArtifactStore()
    bundle = build_bundle(store, model, name="churn", metrics={})
    assert bundle.manifest.trusted_types == ()
    hostile = _swap_model_file(store, bundle, dump_estimator(planted).data)

    with pytest.raises(ValidationError, match="types that were not trusted") as caught:
        load_bundle(store, hostile)
    assert caught.value.details["untrusted"] == [type_name]
    assert type_name in str(caught.value)
    assert not marker.exists()


def test_a_tampered_file_is_refused_naming_the_expected_and_actual_digest(
    tmp_path: Path, model: Model
) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    bundle = build_bundle(store, model, name="churn", metrics={})
    expected = bundle.files[MODEL_FILE].digest
    actual = _tamper(store, expected)

    with pytest.raises(IntegrityError) as caught:
        load_bundle(store, bundle.digest)
    message = str(caught.value)
    assert MODEL_FILE in message
    assert expected in message
    assert actual in message
    assert caught.value.details["digest"] == expected
    assert caught.value.details["actual"] == actual


def test_a_tampered_version_is_refused_while_production_keeps_serving(tmp_path: Path) -> None:
    from conveyor.store.metadata import MetadataStore

    metadata = MetadataStore.open(f"sqlite:///{tmp_path / 'metadata.db'}")
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    v1, _ = register(metadata, artifacts, c=1.0)
    v2, b2 = register(metadata, artifacts, c=0.01)
    promote(metadata, v1)
    expected = b2.files[MODEL_FILE].digest
    actual = _tamper(artifacts, expected)
    try:
        with TestClient(create_app(metadata, artifacts, poll_interval=60)) as client:
            refused = client.post(
                f"/v2/models/{MODEL}/versions/{v2}/infer", json=infer_body(rows(2))
            )
            assert refused.status_code == 503
            assert expected in refused.json()["error"]
            assert actual in refused.json()["error"]
            served = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(2)))
            assert served.status_code == 200
            assert served.json()["model_version"] == str(v1)
    finally:
        metadata.close()


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "application/python-pickle", "application/json", "text/csv"],
)
def test_a_pickle_request_body_is_refused_without_running(
    tmp_path: Path, content_type: str
) -> None:
    from conveyor.store.metadata import MetadataStore

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_PickleBomb(marker))
    metadata = MetadataStore.open(f"sqlite:///{tmp_path / 'metadata.db'}")
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    promote(metadata, register(metadata, artifacts, c=1.0)[0])
    try:
        with TestClient(create_app(metadata, artifacts, poll_interval=60)) as client:
            headers = {"Content-Type": content_type}
            for path in (f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/invocations"):
                answer = client.post(path, content=payload, headers=headers)
                assert 400 <= answer.status_code < 500, (path, answer.text)
                assert "error" in answer.json()
            feedback = client.post(f"/v2/models/{MODEL}/feedback", content=payload, headers=headers)
            assert 400 <= feedback.status_code < 500, feedback.text
    finally:
        metadata.close()
    assert not marker.exists()


def _tamper(store: LocalArtifactStore, digest: str) -> str:
    """Change bytes of a stored object in place; the digest its bytes now have."""
    path = store.location(digest)
    os.chmod(path, 0o644)  # stored objects are read-only
    with open(path, "r+b") as fh:
        fh.seek(64)
        byte = fh.read(1)
        fh.seek(64)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with open(path, "rb") as fh:
        return digest_bytes(fh.read())
