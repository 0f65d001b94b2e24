"""Zip bombs are refused before anything in them is inflated (issue 8: archive extraction)."""

from __future__ import annotations

import io
import zipfile

import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.core.errors import ValidationError
from conveyor.packaging import _codec, check_zip, dump_estimator, load_estimator


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_highly_compressed_entry_is_refused_as_a_bomb_before_loading() -> None:
    bomb = _zip({"schema.json": b"{}", "blob.npy": bytes(64 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024  # 64 MiB of zeros deflate to well under 1 MiB
    with pytest.raises(ValidationError, match=r"inflates .* times.*zip bomb") as caught:
        load_estimator(bomb, [], what="model/model.skops of bundle blake3:x")
    assert caught.value.details["declared_bytes"] == 64 * 1024 * 1024 + 2
    assert "model/model.skops of bundle blake3:x" in str(caught.value)


def test_too_many_members_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "ZIP_MAX_MEMBERS", 10)
    many = _zip({f"m{i}": b"" for i in range(11)}, zipfile.ZIP_STORED)
    with pytest.raises(ValidationError, match=r"has 11 members \(the limit is 10\)"):
        check_zip(many, what="the cached model")
    check_zip(_zip({f"m{i}": b"" for i in range(10)}, zipfile.ZIP_STORED), what="ten members")


def test_a_declared_total_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "ZIP_MAX_TOTAL", 1000)
    stored = _zip({"a": b"x" * 600, "b": b"y" * 600}, zipfile.ZIP_STORED)
    with pytest.raises(ValidationError, match=r"inflates to 1,200 bytes \(the limit is 1,000\)"):
        check_zip(stored, what="f")


def test_bytes_that_are_not_a_zip_are_left_to_the_reader_to_name() -> None:
    check_zip(b"not a zip at all", what="the cached model")  # nothing in it can inflate
    with pytest.raises(ValidationError, match=r"not an encoded conveyor.Model"):
        _codec.decode_model(b"garbage")


def test_conveyors_own_skops_files_pass_the_limits() -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    saved = dump_estimator(model)
    check_zip(saved.data, what="model.skops")
    loaded = load_estimator(saved.data, saved.trusted, what="model.skops")
    assert loaded.predict([[3.0]]).tolist() == [1]
