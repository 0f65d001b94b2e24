"""What every row needs: where the anchors and Conveyor live, and whether they can run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import BENCH, REPO, WORK

SIDES = BENCH / "sides"

# Which venv under bench/ holds which anchor (see setup_anchors.py).
ANCHOR_VENV = {
    "mlflow": ".venv-anchors",
    "dvc": ".venv-anchors",
    "evidently": ".venv-anchors",
    "mlserver": ".venv-anchors",
    "pandas": ".venv-pandas",
}


@dataclass(frozen=True)
class Tool:
    """A Python environment a side runs in, or the reason it cannot."""

    name: str
    venv: Path
    version: str = ""
    unavailable: str | None = None

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@dataclass(frozen=True)
class Context:
    quick: bool

    def work(self, name: str) -> Path:
        path = WORK / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def anchor(self, name: str) -> Tool:
        venv = BENCH / ANCHOR_VENV[name]
        try:
            status = json.loads((venv / "status.json").read_text())
        except (OSError, ValueError):
            return Tool(
                name,
                venv,
                unavailable=f"anchor {name} is not installed (run bench/setup_anchors.sh)",
            )
        st = status.get("anchors", {}).get(name)
        if st is None:
            return Tool(name, venv, unavailable=f"anchor {name} missing from {venv}/status.json")
        if not st["ok"]:
            return Tool(
                name, venv, unavailable=f"anchor {name} could not be installed: {st['reason']}"
            )
        return Tool(name, venv, version=st["version"])

    def conveyor(self) -> Tool:
        venv = Path(os.environ.get("BENCH_CONVEYOR_VENV", REPO / ".venv"))
        if not (venv / "bin" / "python").exists():
            return Tool("conveyor", venv, unavailable=f"conveyor not installed: no venv at {venv}")
        if not (venv / "bin" / "conveyor").exists():
            return Tool(
                "conveyor",
                venv,
                unavailable=f"conveyor not installed: {venv}/bin/conveyor missing "
                "(install the project into its venv)",
            )
        out = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "from importlib.metadata import version; print(version('conveyor'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        version = out.stdout.strip() if out.returncode == 0 else "?"
        return Tool("conveyor", venv, version=version)


def rmtree(path: Path) -> None:
    """Remove a folder, read-only content included (stores make their objects read-only).

    Raises when it cannot: a store left in place would turn the next ingest into a no-op.
    """

    def _writable_then_retry(func, target, _exc):  # type: ignore[no-untyped-def]
        os.chmod(os.path.dirname(target), 0o755)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, 0o755)
        func(target)

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=_writable_then_retry)
    if path.exists():
        raise RuntimeError(f"could not remove {path}")


def unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_checked(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> str:
    """Run an untimed setup command; raise with its output when it fails."""
    from harness import side_env

    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=side_env(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-8:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exit {proc.returncode}: " + " | ".join(tail))
    return proc.stdout


HARNESS_PYTHON = sys.executable
