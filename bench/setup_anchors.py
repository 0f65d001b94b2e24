"""Install the anchor tools (MLflow, DVC, Evidently, MLServer, pandas) into venvs under bench/.

Never touches Conveyor's own venv. Each venv gets a ``status.json`` that says, per anchor,
whether it installed and imports, and if not, why; ``bench/run.py`` reads it and prints
"anchor X could not be installed: <reason>" instead of failing silently.

Usage::

    python bench/setup_anchors.py            # create what is missing or out of date
    python bench/setup_anchors.py --force    # recreate the venvs
    python bench/setup_anchors.py --relock   # resolve afresh and rewrite the lock files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ANCHORS_DIR = BENCH / "anchors"


@dataclass(frozen=True)
class Anchor:
    name: str
    requirements: tuple[str, ...]
    # Run with the venv's python; must exit 0 and print the version on its last line.
    check: str


@dataclass(frozen=True)
class VenvSpec:
    name: str  # folder under bench/
    requirements: Path
    lock: Path
    anchors: tuple[Anchor, ...]
    common: tuple[str, ...] = field(default=())  # installed first when anchors go one by one

    @property
    def path(self) -> Path:
        return BENCH / self.name


_CHECK_MLFLOW = "import mlflow, sklearn; print(mlflow.__version__)"
_CHECK_EVIDENTLY = (
    "import evidently; from evidently import Report, Dataset, DataDefinition; "
    "from evidently.presets import DataDriftPreset; print(evidently.__version__)"
)
_CHECK_MLSERVER = (
    "import mlserver, mlserver_sklearn; from importlib.metadata import version; "
    "print(version('mlserver'))"
)
_CHECK_DVC = (
    "import subprocess, sys, os; "
    "exe = os.path.join(os.path.dirname(sys.executable), 'dvc'); "
    "out = subprocess.run([exe, '--version'], check=True, capture_output=True, text=True); "
    "print(out.stdout.strip().splitlines()[-1])"
)
_CHECK_PANDAS = "import pandas; print(pandas.__version__)"

VENVS: tuple[VenvSpec, ...] = (
    VenvSpec(
        name=".venv-anchors",
        requirements=ANCHORS_DIR / "requirements.txt",
        lock=ANCHORS_DIR / "lock.txt",
        common=("scikit-learn==1.9.1", "pandas==2.3.3"),
        anchors=(
            Anchor("mlflow", ("mlflow==3.17.2",), _CHECK_MLFLOW),
            Anchor("dvc", ("dvc==3.67.1",), _CHECK_DVC),
            Anchor("evidently", ("evidently==0.7.23",), _CHECK_EVIDENTLY),
            Anchor("mlserver", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1"), _CHECK_MLSERVER),
        ),
    ),
    VenvSpec(
        name=".venv-pandas",
        requirements=ANCHORS_DIR / "requirements-pandas.txt",
        lock=ANCHORS_DIR / "lock-pandas.txt",
        anchors=(Anchor("pandas", ("pandas==3.1.1",), _CHECK_PANDAS),),
    ),
)


def _fingerprint(spec: VenvSpec) -> str:
    h = hashlib.sha256()
    for f in (spec.requirements, spec.lock):
        h.update(f.read_bytes() if f.exists() else b"-")
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def _status_path(spec: VenvSpec) -> Path:
    return spec.path / "status.json"


def is_current(spec: VenvSpec) -> bool:
    """True when the venv exists and was built from the present requirements and lock."""
    try:
        status = json.loads(_status_path(spec).read_text())
    except (OSError, ValueError):
        return False
    return bool(status.get("fingerprint") == _fingerprint(spec))


def _pip(spec: VenvSpec, args: list[str], log: Path) -> tuple[bool, str]:
    cmd = [
        str(spec.path / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        *args,
    ]
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode == 0:
        return True, ""
    # The reason is the pip error lines at the end of the log, without the noise of
    # "Location ... is ignored" warnings from local extra indexes.
    lines = [
        ln
        for ln in log.read_text().splitlines()
        if ln.startswith("ERROR") and "is ignored" not in ln
    ]
    return False, " | ".join(lines[-3:]) or f"pip exited {proc.returncode}; see {log}"


def _check(spec: VenvSpec, anchor: Anchor) -> tuple[bool, str]:
    proc = subprocess.run(
        [str(spec.path / "bin" / "python"), "-c", anchor.check],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode == 0:
        return True, proc.stdout.strip().splitlines()[-1]
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return False, (err[-1] if err else f"exit {proc.returncode}")


def _dir_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return round(total / 2**20, 1)


def build(spec: VenvSpec, *, force: bool, relock: bool, python: str) -> dict[str, object]:
    if force or relock or not is_current(spec):
        shutil.rmtree(spec.path, ignore_errors=True)
    else:
        print(f"[setup] {spec.name}: up to date")
        current: dict[str, object] = json.loads(_status_path(spec).read_text())
        return current

    print(
        f"[setup] {spec.name}: creating venv with {python} (this takes a few minutes) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(spec.path)], check=True)
    log = spec.path / "install.log"
    constraints = [] if relock or not spec.lock.exists() else ["-c", str(spec.lock)]
    ok_all, reason_all = _pip(spec, ["-r", str(spec.requirements), *constraints], log)

    install: dict[str, tuple[bool, str]] = {}
    if ok_all:
        install = {a.name: (True, "") for a in spec.anchors}
    else:
        # Find out which anchor is to blame: the others still get measured.
        print(
            f"[setup] {spec.name}: joint install failed ({reason_all}); trying each anchor alone",
            flush=True,
        )
        if spec.common:
            _pip(spec, [*spec.common, *constraints], log)
        for a in spec.anchors:
            install[a.name] = _pip(spec, [*a.requirements, *constraints], log)

    anchors: dict[str, dict[str, object]] = {}
    for a in spec.anchors:
        ok, reason = install[a.name]
        if ok:
            ok, out = _check(spec, a)
            entry = (
                {"ok": True, "version": out}
                if ok
                else {"ok": False, "reason": f"installed but does not import/run: {out}"}
            )
        else:
            entry = {"ok": False, "reason": f"pip install failed: {reason}"}
        anchors[a.name] = entry
        state = f"ok {entry['version']}" if entry["ok"] else f"FAILED: {entry['reason']}"
        print(f"[setup]   {a.name:<10} {state}", flush=True)

    if relock:
        freeze = subprocess.run(
            [
                str(spec.path / "bin" / "python"),
                "-m",
                "pip",
                "freeze",
                "--disable-pip-version-check",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        spec.lock.write_text(
            f"# pip freeze of bench/{spec.name} (written by setup_anchors.py --relock)\n" + freeze
        )
        print(f"[setup] {spec.name}: wrote {spec.lock.relative_to(BENCH)}")

    status = {
        "venv": spec.name,
        "fingerprint": _fingerprint(spec),
        "python": subprocess.run(
            [str(spec.path / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "install_seconds": round(time.perf_counter() - t0, 1),
        "size_mb": _dir_mb(spec.path),
        "anchors": anchors,
    }
    _status_path(spec).write_text(json.dumps(status, indent=2) + "\n")
    print(f"[setup] {spec.name}: {status['install_seconds']} s, {status['size_mb']} MB", flush=True)
    return status


def default_python() -> str:
    """A Python 3.11 to build the anchor venvs with (not a venv's: its base interpreter)."""
    env = os.environ.get("BENCH_ANCHOR_PYTHON")
    if env:
        return env
    base = getattr(sys, "_base_executable", sys.executable)
    return base if sys.version_info[:2] == (3, 11) else (shutil.which("python3.11") or base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="recreate the venvs")
    parser.add_argument(
        "--relock", action="store_true", help="resolve without the lock files and rewrite them"
    )
    parser.add_argument(
        "--python",
        default=default_python(),
        help="interpreter to create the venvs with (default: a Python 3.11)",
    )
    args = parser.parse_args(argv)
    failed = []
    for spec in VENVS:
        status = build(spec, force=args.force, relock=args.relock, python=args.python)
        anchors = status["anchors"]
        assert isinstance(anchors, dict)
        failed += [name for name, st in anchors.items() if not st["ok"]]
    if failed:
        print(
            f"[setup] anchors that could not be installed: {', '.join(failed)} "
            "(the suite marks their rows and goes on)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
