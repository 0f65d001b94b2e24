"""Extracting a code snapshot refuses archive bombs (too many entries, too many bytes, one huge
or sparse file) and names that cannot be written, before it writes anything."""

from __future__ import annotations

import io
import tarfile
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import ValidationError
from conveyor.pipeline._provenance import (
    MAX_SNAPSHOT_BYTES,
    MAX_SNAPSHOT_MEMBER_BYTES,
    MAX_SNAPSHOT_MEMBERS,
    code_snapshot,
    extract_snapshot,
)

if TYPE_CHECKING:
    from pathlib import Path

MIB = 1024 * 1024


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _declared(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One header declaring ``size`` bytes that are not there: what a bomb's header claims,
    without the test holding the bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    return info.tobuf(tarfile.GNU_FORMAT) + tarfile.NUL * (2 * tarfile.BLOCKSIZE)


def _written(dest: Path) -> list[Path]:
    return list(dest.rglob("*")) if dest.exists() else []


def test_the_limits_are_the_documented_ones() -> None:
    assert (MAX_SNAPSHOT_MEMBERS, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_MEMBER_BYTES) == (
        50_000,
        512 * MIB,
        100 * MIB,
    )


def test_a_real_snapshot_within_the_limits_is_extracted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "flow").mkdir(parents=True)
    (src / "conveyor.yaml").write_text("pipeline: flow.pipe:pipeline\n")
    (src / "flow" / "pipe.py").write_text("X = 1\n")

    written = extract_snapshot(code_snapshot(src), tmp_path / "out")

    assert written == ["conveyor.yaml", "flow/pipe.py"]
    assert (tmp_path / "out" / "flow" / "pipe.py").read_text() == "X = 1\n"


def test_exactly_the_limits_are_accepted(tmp_path: Path) -> None:
    data = _tar({f"m{i}.py": b"x" * 10 for i in range(5)})
    written = extract_snapshot(
        data, tmp_path / "out", max_members=5, max_bytes=50, max_member_bytes=10
    )
    assert len(written) == 5


def test_too_many_entries_are_refused_before_any_is_written(tmp_path: Path) -> None:
    data = _tar({f"m{i:02}.py": b"pass\n" for i in range(11)})
    with pytest.raises(ValidationError, match="more than 10 entries; refusing to extract"):
        extract_snapshot(data, tmp_path / "out", max_members=10)
    assert _written(tmp_path / "out") == []


def test_too_many_bytes_in_all_are_refused_before_any_is_written(tmp_path: Path) -> None:
    data = _tar({"a.py": b"a" * 600, "b.py": b"b" * 600})
    with pytest.raises(ValidationError, match="more than 1000 bytes; refusing to extract"):
        extract_snapshot(data, tmp_path / "out", max_bytes=1000)
    assert _written(tmp_path / "out") == []


def test_a_file_declaring_more_than_100_mib_is_refused_at_its_header(tmp_path: Path) -> None:
    data = _declared("huge.py", 100 * MIB + 1)
    with pytest.raises(ValidationError, match=r"'huge.py' has 104857601 bytes, more than"):
        extract_snapshot(data, tmp_path / "out")
    assert _written(tmp_path / "out") == []


def test_files_declaring_more_than_512_mib_in_all_are_refused(tmp_path: Path) -> None:
    # One header, past the per-file cap lifted for the test, so the default total is what stops
    # it.
    data = _declared("huge.py", 512 * MIB + 1)
    with pytest.raises(ValidationError, match=f"more than {512 * MIB} bytes"):
        extract_snapshot(data, tmp_path / "out", max_member_bytes=1024 * MIB)
    assert _written(tmp_path / "out") == []


def test_a_sparse_file_is_refused(tmp_path: Path) -> None:
    # A sparse entry expands to its declared size from almost no bytes in the archive.
    data = _declared("sparse.py", 0, tarfile.GNUTYPE_SPARSE)
    with pytest.raises(ValidationError, match="not a plain file"):
        extract_snapshot(data, tmp_path / "out")


def test_a_bad_entry_after_good_ones_leaves_nothing_written(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("a.py", "b.py"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pass\n"))
        link = tarfile.TarInfo("c.py")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValidationError, match=r"'c\.py' is not a plain file"):
        extract_snapshot(buffer.getvalue(), tmp_path / "out")
    assert _written(tmp_path / "out") == []


@pytest.mark.parametrize(
    "name", ["../evil.py", "/abs.py", "a/../../evil.py", "C:evil.py", "a\\..\\evil.py", ".."]
)
def test_an_escaping_name_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    data = _declared(name, 0)
    with pytest.raises(ValidationError, match="refusing to extract") as caught:
        extract_snapshot(data, tmp_path / "out")
    assert repr(name) in str(caught.value)
    assert not (tmp_path / "evil.py").exists()


def test_an_entry_whose_folder_is_a_link_out_is_refused(tmp_path: Path) -> None:
    # The destination is a fresh folder in practice; should it hold a link, it is not followed.
    dest = tmp_path / "out"
    dest.mkdir()
    (tmp_path / "outside").mkdir()
    (dest / "flow").symlink_to(tmp_path / "outside")
    with pytest.raises(ValidationError, match="leads outside"):
        extract_snapshot(_tar({"flow/pipe.py": b"X = 1\n"}), dest)
    assert list((tmp_path / "outside").iterdir()) == []


@pytest.mark.parametrize(
    "names", [("a.py", "a.py/b.py"), ("x/y.py", "x"), ("x/y/z.py", "x/y")], ids=str
)
def test_a_name_that_is_both_a_file_and_a_folder_is_refused(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError, match="both a file and a folder"):
        extract_snapshot(_tar(dict.fromkeys(names, b"")), tmp_path / "out")
    assert _written(tmp_path / "out") == []
