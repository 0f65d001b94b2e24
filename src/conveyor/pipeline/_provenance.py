"""What a rebuild needs beyond the step rows: the code, the git state, the seeds.

Recorded once per pipeline run that executes a step (a fully cached run made nothing new, and
the run that executed its steps is the one a rebuild starts from):

- **the code snapshot**: a tar of the project's source files (``*.py``, ``conveyor.yaml``,
  ``policies.yaml``, requirements and lock files), never data, never ``.conveyor/``, hidden
  folders or virtual environments. Entries are sorted and carry no time, owner or mode beyond
  0644, so the same code is the same bytes, hence the same artifact digest, stored once.
  Uncompressed: gzip output depends on the zlib build, and the same code must keep its digest.
- **the git state** of the project folder: ``HEAD`` and whether ``git status --porcelain``
  shows anything in the folder (``.conveyor/`` aside); ``None`` for both outside a repository
  or without ``git``. The two commands run concurrently, while the first executed step runs.
- **the seeds**: before each executed step, ``random``, ``numpy.random`` (the legacy global
  state) and, when the step's code has imported them already, ``torch`` and ``tensorflow`` are
  seeded with :func:`step_seed` of the run's base seed and the step's name. The base seed is the
  ``seed`` parameter of conveyor.yaml when it is a whole number, else :data:`DEFAULT_SEED`. Each
  step gets its own seed, so adding a step does not change what another one draws.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError
from conveyor.core.paths import inside

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_SEED",
    "MAX_SNAPSHOT_BYTES",
    "MAX_SNAPSHOT_MEMBERS",
    "MAX_SNAPSHOT_MEMBER_BYTES",
    "SNAPSHOT_MEDIA_TYPE",
    "GitProbe",
    "base_seed",
    "code_snapshot",
    "extract_snapshot",
    "git_state",
    "seed_everything",
    "snapshot_members",
    "step_seed",
]

logger = logging.getLogger(__name__)

#: The base seed of a project whose conveyor.yaml sets no whole-number ``seed`` parameter.
DEFAULT_SEED = 0
SNAPSHOT_MEDIA_TYPE = "application/vnd.conveyor.code-snapshot+tar"

_SOURCE_SUFFIXES = (".py",)
_SOURCE_NAMES = frozenset(
    {
        "conveyor.yaml",
        "conveyor.yml",
        "policies.yaml",
        "policies.yml",
        "pyproject.toml",
        "setup.cfg",
        "Pipfile",
        "Pipfile.lock",
        "poetry.lock",
        "uv.lock",
        "environment.yml",
        "environment.yaml",
    }
)
_REQUIREMENTS_PREFIXES = ("requirements", "constraints")
_SKIPPED_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "dist-packages", "__pypackages__"}
)
# A source file larger than this is generated or data in disguise; it is left out, and said so.
_MAX_FILE = 5 * 1024 * 1024
_GIT_TIMEOUT_S = 10
#: What :func:`extract_snapshot` accepts: far above a real project's source files (each of
#: which is at most 5 MiB, see above), far below what would fill a disk or exhaust inodes.
MAX_SNAPSHOT_MEMBERS = 50_000
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
MAX_SNAPSHOT_MEMBER_BYTES = 100 * 1024 * 1024
_TAMPERED = "the snapshot was not written by Conveyor or has been tampered with"


def _is_source(name: str) -> bool:
    if name.endswith(_SOURCE_SUFFIXES) or name in _SOURCE_NAMES:
        return True
    return name.startswith(_REQUIREMENTS_PREFIXES) and name.endswith((".txt", ".in"))


def snapshot_members(root: Path) -> list[str]:
    """The POSIX paths, relative to ``root`` and sorted, of the files a snapshot holds."""
    members: list[str] = []
    for folder, dirs, files in os.walk(root):
        # Hidden folders (.conveyor, .git, .venv), caches and virtual environments are not code.
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))
        ]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if not _is_source(name):
                continue
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            if os.path.getsize(path) > _MAX_FILE:
                logger.warning("code snapshot leaves out %s: larger than 5 MiB", path)
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            members.append(rel)
    return sorted(members)


def code_snapshot(root: Path) -> bytes:
    """A deterministic tar of the project's source files (see the module docstring)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in snapshot_members(root):
            data = (root / rel).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def extract_snapshot(
    data: bytes,
    dest: Path,
    *,
    max_members: int = MAX_SNAPSHOT_MEMBERS,
    max_bytes: int = MAX_SNAPSHOT_BYTES,
    max_member_bytes: int = MAX_SNAPSHOT_MEMBER_BYTES,
) -> list[str]:
    """Write a snapshot's files under ``dest``; only plain files with relative, inward paths.

    Every entry is checked before the first file is written, so a refused archive leaves
    nothing behind.

    Args:
        data: The tar's bytes.
        dest: The folder to write into (made when missing).
        max_members: The most entries accepted.
        max_bytes: The most bytes accepted, all files together.
        max_member_bytes: The most bytes accepted for one file.

    Returns:
        The paths written, relative to ``dest``.

    Raises:
        ValidationError: the bytes are not a tar; an entry is a link, a device, a sparse file,
            an absolute path or a path leaving ``dest`` (``..``, a link on the way); or the
            archive is larger than the limits: nothing of a doubtful archive is trusted.
    """
    written: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = _checked_members(tar, dest, max_members, max_bytes, max_member_bytes)
            for m, path in members:
                source = tar.extractfile(m)
                assert source is not None  # a regular file, checked above
                path.parent.mkdir(parents=True, exist_ok=True)
                with source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out)
                written.append(m.name)
    except tarfile.TarError as exc:
        raise ValidationError(
            f"the code snapshot is not a readable tar archive: {exc}",
            hint="the artifact is damaged; run the pipeline again to record a new snapshot",
        ) from exc
    return written


def _checked_members(
    tar: tarfile.TarFile, dest: Path, max_members: int, max_bytes: int, max_member_bytes: int
) -> list[tuple[tarfile.TarInfo, Path]]:
    """Every entry of ``tar`` with the path it is written to; raises at the first bad one.

    Entries are read one header at a time, so an archive of millions of entries is refused at
    the first one past the limit, not after all of them are in memory.
    """
    checked: list[tuple[tarfile.TarInfo, Path]] = []
    files: set[str] = set()
    folders: set[str] = set()
    total = 0
    for m in tar:
        if len(checked) >= max_members:
            raise ValidationError(
                f"the code snapshot has more than {max_members} entries; refusing to extract it",
                hint=_TAMPERED,
            )
        if not m.isfile() or m.issparse() or "\\" in m.name:
            raise ValidationError(
                f"code snapshot entry {m.name!r} is not a plain file with a relative "
                "path inside the snapshot; refusing to extract it",
                hint=_TAMPERED,
            )
        if m.size > max_member_bytes:
            raise ValidationError(
                f"code snapshot entry {m.name!r} has {m.size} bytes, more than the "
                f"{max_member_bytes} allowed for one file; refusing to extract it",
                hint=_TAMPERED,
            )
        total += m.size
        if total > max_bytes:
            raise ValidationError(
                f"the code snapshot holds more than {max_bytes} bytes; refusing to extract it",
                hint=_TAMPERED,
            )
        try:
            path = inside(dest, m.name)
        except ValidationError as exc:
            raise ValidationError(
                f"code snapshot entry {m.name!r} is not a relative path inside the snapshot "
                f"({exc.message}); refusing to extract it",
                hint=_TAMPERED,
            ) from exc
        # A name that is both a file and a folder ("a.py" and "a.py/b.py") cannot be written.
        parents = [p.as_posix() for p in PurePosixPath(m.name).parents][:-1]
        if m.name in folders or any(p in files for p in parents):
            raise ValidationError(
                f"code snapshot entry {m.name!r} is both a file and a folder; "
                "refusing to extract it",
                hint=_TAMPERED,
            )
        files.add(m.name)
        folders.update(parents)
        checked.append((m, path))
    return checked


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """``(HEAD commit, dirty)`` of the git work tree holding ``root``, or ``(None, None)``.

    Dirty means ``git status --porcelain`` lists a change inside ``root`` (untracked files
    included, Conveyor's ``.conveyor/`` folder excluded). Without ``git``, outside a work tree
    or when git fails, both are ``None``; in a repository with no commit yet, only the commit.
    """
    return GitProbe(root).result()


class GitProbe:
    """:func:`git_state`, started now and read later: the two ``git`` processes (~5 ms) run
    while the pipeline's first step does."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._procs: list[subprocess.Popen[bytes]] = []
        git = shutil.which("git")
        if git is None:
            return
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        commands = (
            [git, "rev-parse", "--verify", "-q", "HEAD"],
            [git, "status", "--porcelain", "--", ".", ":(exclude).conveyor"],
        )
        try:
            for command in commands:
                self._procs.append(
                    # Fixed arguments, git found on PATH: no shell, nothing from the user.
                    subprocess.Popen(
                        command,
                        cwd=root,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                    )
                )
        except OSError as exc:
            logger.debug("git state of %s not recorded: %s", root, exc)
            self._stop()

    def _stop(self) -> None:
        for p in self._procs:
            p.kill()
            p.communicate()
        self._procs = []

    def result(self) -> tuple[str | None, bool | None]:
        if len(self._procs) != 2:
            return None, None
        try:
            head_out, status_out = (p.communicate(timeout=_GIT_TIMEOUT_S)[0] for p in self._procs)
        except subprocess.TimeoutExpired:
            logger.debug(
                "git state of %s not recorded: git took over %d s", self._root, _GIT_TIMEOUT_S
            )
            self._stop()
            return None, None
        head, status = self._procs
        self._procs = []
        if status.returncode != 0:
            return None, None  # not a work tree
        commit = head_out.decode().strip() if head.returncode == 0 else None
        return commit or None, bool(status_out.strip())


def base_seed(params: dict[str, Any]) -> int:
    """The run's base seed: the ``seed`` parameter when it is a whole number, else 0."""
    seed = params.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return DEFAULT_SEED


def step_seed(base: int, step: str) -> int:
    """The seed of one step: 32 bits of SHA-256 of the base seed and the step's name.

    32 bits because ``numpy.random.seed`` takes no more; the same inputs give the same seed on
    every platform and Python version (unlike ``hash()``).
    """
    digest = hashlib.sha256(f"{base}:{step}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy.random`` and, when already imported, torch and tensorflow.

    numpy is imported when installed (a step importing it lazily would otherwise draw from an
    unseeded state); torch and tensorflow never are, since importing them costs seconds.
    """
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is None and importlib.util.find_spec("numpy") is not None:
        numpy = importlib.import_module("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.manual_seed(seed)
        except Exception as exc:  # a broken or partial install must not fail the run
            logger.debug("torch not seeded: %s", exc)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            tf.random.set_seed(seed)
        except Exception as exc:
            logger.debug("tensorflow not seeded: %s", exc)
