"""``inside``: a path given as data resolves under its root, or is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.core.errors import ValidationError
from conveyor.core.paths import inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


@pytest.mark.parametrize("relative", ["a.py", "sub/a.py", "sub/deeper/new.py", "./a", Path("a")])
def test_a_relative_path_resolves_under_the_root(root: Path, relative: str | Path) -> None:
    assert inside(root, relative) == root.resolve() / Path(relative)


def test_the_root_need_not_exist(tmp_path: Path) -> None:
    assert inside(tmp_path / "not-yet", "a/b") == tmp_path.resolve() / "not-yet" / "a" / "b"


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("/etc/passwd", "is absolute"),
        ("//host/share", "is absolute"),
        ("C:\\Windows\\win.ini", "is absolute"),
        ("C:relative", "is absolute"),
        ("\\\\host\\share\\x", "is absolute"),
        ("..", "contains '..'"),
        ("../outside/x", "contains '..'"),
        ("sub/../../outside", "contains '..'"),
        ("sub/../a.py", "contains '..'"),  # no `..` is ever needed, even one that stays inside
        ("..\\outside\\x", "contains '..'"),
        ("a.py\x00.txt", "contains a NUL byte"),
        ("", "is empty"),
    ],
)
def test_a_path_that_is_not_relative_and_inward_is_refused(
    root: Path, relative: str, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason) as caught:
        inside(root, relative)
    message = str(caught.value)
    assert repr(relative) in message
    assert str(root) in message
    assert "\n" not in message


def test_a_symlink_leading_out_of_the_root_is_refused(root: Path) -> None:
    outside = root.parent / "outside"
    os.symlink(outside, root / "sub" / "out")
    os.symlink(outside / "secret.txt", root / "file-out")

    for relative in ("sub/out", "sub/out/secret.txt", "sub/out/new/deeper", "file-out"):
        with pytest.raises(ValidationError, match="leads outside") as caught:
            inside(root, relative)
        assert str(outside) in str(caught.value)


def test_a_symlinked_root_is_resolved_first(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert inside(alias, "sub/a.py") == root.resolve() / "sub" / "a.py"


def test_a_symlink_that_stays_inside_is_followed(root: Path) -> None:
    os.symlink(root / "sub", root / "link")
    os.symlink("../sub", root / "sub" / "relative-link")  # a relative target, still inside

    assert inside(root, "link/a.py") == root.resolve() / "sub" / "a.py"
    assert inside(root, "sub/relative-link") == root.resolve() / "sub"


def test_a_symlink_loop_is_refused_not_raised_raw(root: Path) -> None:
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    with pytest.raises(ValidationError, match="cannot be resolved"):
        inside(root, "loop-a/x")
