"""``LoadedModel.predict(outputs=...)``: only the asked outputs, each exactly scikit-learn's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from tests.unit.server._support import MODEL, estimator, register, rows
from tests.unit.server.conftest import C1

from conveyor.core.errors import ValidationError
from conveyor.packaging import load_bundle

if TYPE_CHECKING:
    from conveyor.packaging import LoadedModel
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore


@pytest.fixture
def model(sqlite_store: MetadataStore, artifact_store: LocalArtifactStore) -> LoadedModel:
    _, bundle = register(sqlite_store, artifact_store, c=C1)
    return load_bundle(artifact_store, bundle.digest)


def test_both_outputs_equal_the_pipelines_own(model: LoadedModel) -> None:
    frame = rows(50)
    outputs = model.predict(frame)
    assert list(outputs) == ["predict", "predict_proba"]
    reference = estimator(C1)
    np.testing.assert_array_equal(outputs["predict"], reference.predict(frame))
    np.testing.assert_array_equal(outputs["predict_proba"], reference.predict_proba(frame)[:, 1])


@pytest.mark.parametrize("name", ["predict", "predict_proba"])
def test_one_output_is_computed_alone(model: LoadedModel, name: str) -> None:
    frame = rows(7)
    alone = model.predict(frame, outputs=[name])
    assert list(alone) == [name]
    np.testing.assert_array_equal(alone[name], model.predict(frame)[name])


def test_unknown_output_is_refused(model: LoadedModel) -> None:
    with pytest.raises(ValidationError, match=f"model '{MODEL}' has no output 'score'"):
        model.predict(rows(1), outputs=["score"])
