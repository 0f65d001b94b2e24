"""The pipeline codec of a Model, and the canonical (reproducible) skops files under it."""

from __future__ import annotations

import io
import json
import zipfile
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.preprocessing import StandardScaler

from conveyor.core.errors import ValidationError
from conveyor.packaging import Model, decode_model, encode_model
from conveyor.packaging._codec import _canonical_skops, dump_estimator, load_estimator

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def test_encode_decode_round_trip_predicts_the_same(model: Model, frame: pd.DataFrame) -> None:
    decoded = decode_model(encode_model(model))

    assert decoded.flavor == "sklearn"
    pd.testing.assert_frame_equal(decoded.input_example, model.input_example)
    np.testing.assert_array_equal(
        decoded.estimator.predict_proba(frame), model.estimator.predict_proba(frame)
    )


def test_encoding_is_reproducible_through_a_round_trip(model: Model) -> None:
    first = encode_model(model)

    assert encode_model(model) == first
    # A cached model decoded in another run must encode to the same bytes again.
    assert encode_model(decode_model(first)) == first


def test_decode_refuses_bytes_that_are_not_an_encoded_model() -> None:
    with pytest.raises(ValidationError, match=r"not an encoded conveyor.Model"):
        decode_model(b"PK\x03\x04 definitely not a zip")


def test_decode_refuses_an_unknown_codec_format(model: Model) -> None:
    entries = _read_zip(encode_model(model))
    entries["meta.json"] = json.dumps({"format": 99, "flavor": "sklearn", "trusted": []}).encode()

    with pytest.raises(ValidationError, match="codec format 99"):
        decode_model(_write_zip(entries))


def test_model_rejects_an_unknown_flavor(fitted: Pipeline, frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="flavor 'onnx' is not supported"):
        Model(estimator=fitted, input_example=frame, flavor="onnx")


def test_model_rejects_an_input_example_that_is_not_a_frame(fitted: Pipeline) -> None:
    with pytest.raises(ValidationError, match="must be a pandas DataFrame, not ndarray"):
        Model(estimator=fitted, input_example=np.zeros((2, 3)))


def test_an_estimator_skops_cannot_save_is_a_validation_error() -> None:
    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    scaler.generator_ = (i for i in range(3))  # skops has no representation of a generator

    with pytest.raises(ValidationError, match="cannot be saved with skops"):
        dump_estimator(scaler)


def test_load_refuses_types_that_were_not_recorded_as_trusted() -> None:
    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    scaler.helper_ = _Helper()
    saved = dump_estimator(scaler)
    assert saved.trusted == (f"{__name__}._Helper",)

    with pytest.raises(ValidationError, match=r"not trusted when it was packaged: .*_Helper"):
        load_estimator(saved.data, [], what="model/model.skops")
    assert isinstance(load_estimator(saved.data, saved.trusted, what="x").helper_, _Helper)


def test_canonical_skops_ignores_ids_file_names_times_and_set_order() -> None:
    # Two saves of one object differ only in what skops takes from the process: ids (memory
    # addresses), file names made of them, zip times, and set order (string hashes).
    first = _fake_skops(ids=(140001, 140010, 140020), order=("a", "b"), when=(2026, 1, 1, 0, 0, 0))
    second = _fake_skops(ids=(99, 7, 12345), order=("b", "a"), when=(2027, 6, 6, 6, 6, 6))

    assert first != second
    assert _canonical_skops(first) == _canonical_skops(second)
    schema = json.loads(_read_zip(_canonical_skops(first)[0])["schema.json"])
    assert schema["__id__"] == 1
    assert schema["content"]["content"]["mean_"]["file"] == "1.npy"


def test_canonical_skops_files_still_load() -> None:
    scaler = StandardScaler().fit(np.arange(12.0).reshape(4, 3))
    scaler.tags_ = {"gamma", "alpha", "beta"}

    loaded = sio.loads(dump_estimator(scaler).data)

    np.testing.assert_array_equal(loaded.mean_, scaler.mean_)
    assert loaded.tags_ == {"alpha", "beta", "gamma"}


_Time = tuple[int, int, int, int, int, int]


class _Helper:
    """A type outside skops' default trust, as a user's own transformer part would be."""


def _read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(entries: dict[str, bytes], when: _Time = (1980, 1, 1, 0, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=when), content)
    return buffer.getvalue()


def _fake_skops(ids: tuple[int, int, int], order: tuple[str, str], when: _Time) -> bytes:
    def text(value: str, node_id: int) -> dict[str, object]:
        return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                "content": json.dumps(value), "is_json": True, "__id__": node_id}  # fmt: skip

    array = np.arange(3.0)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    schema = {
        "__class__": "StandardScaler",
        "__module__": "sklearn.preprocessing._data",
        "__loader__": "ObjectNode",
        "content": {
            "__class__": "dict",
            "__module__": "builtins",
            "__loader__": "DictNode",
            "content": {
                "mean_": {
                    "__class__": "ndarray",
                    "__module__": "numpy",
                    "__loader__": "NdArrayNode",
                    "type": "numpy",
                    "file": f"{ids[1]}.npy",
                    "__id__": ids[1],
                },
                "tags_": {
                    "__class__": "set",
                    "__module__": "builtins",
                    "__loader__": "SetNode",
                    "content": [text(order[0], ids[2] + 1), text(order[1], ids[2] + 2)],
                    "__id__": ids[2],
                },
            },
            "__id__": ids[0] + 1,
        },
        "__id__": ids[0],
        "protocol": 3,
    }
    return _write_zip(
        {"schema.json": json.dumps(schema).encode(), f"{ids[1]}.npy": buffer.getvalue()}, when
    )
