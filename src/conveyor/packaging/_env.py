"""The environment lock of a bundle: Python version, platform and exact package versions.

Read from the installed distributions' metadata (``importlib.metadata``), never by running pip
in a subprocess: MLflow spends ~99% of its ``log_model`` time (3.9 s) inferring requirements that
way. Here the lock costs a few milliseconds (see ``bench/`` and the packaging report).

The lock names what the model needs to load and predict: scikit-learn and its numerical stack,
skops, pandas and pyarrow (for the input example), Conveyor itself, and the distributions that
provide any other package whose objects are inside the saved model (lightgbm, say).
"""

from __future__ import annotations

import functools
import platform
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["BASE_DISTRIBUTIONS", "EnvironmentLock", "environment_drift", "lock_environment"]

#: Distributions every sklearn bundle needs, whatever is inside the model.
BASE_DISTRIBUTIONS = ("conveyor", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "skops")
# Import names whose distribution is named differently, or which are part of another one.
_DISTRIBUTION_OF = {
    "conveyor": "conveyor",
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "scipy": "scipy",
    "skops": "skops",
    "sklearn": "scikit-learn",
}
# Upgrading Conveyor does not change a model's numbers; the other locked packages can.
_NOT_DRIFT = frozenset({"conveyor"})


@dataclass(frozen=True)
class EnvironmentLock:
    """What a bundle was packaged with.

    Attributes:
        python: Python version, e.g. ``3.11.7``.
        platform: Wheel platform, e.g. ``linux-x86_64`` (not the kernel release, which would
            make the same model's digest differ between two patch levels of one OS).
        requirements: Distribution name -> exact installed version.
    """

    python: str
    platform: str
    requirements: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "platform": self.platform,
            "requirements": dict(sorted(self.requirements.items())),
        }

    def requirements_txt(self) -> str:
        """The lock as a pip requirements file, one ``name==version`` per line, sorted."""
        return "".join(
            f"{name}=={version}\n" for name, version in sorted(self.requirements.items())
        )


def lock_environment(packages: Iterable[str] = ()) -> EnvironmentLock:
    """The lock of this process for a model made of objects from ``packages``.

    Args:
        packages: Top-level import names of the model's objects (``sklearn``, ``lightgbm``);
            the standard library and project code that no distribution provides are skipped.
    """
    names = set(BASE_DISTRIBUTIONS)
    for package in packages:
        dist = _distribution_of(package)
        if dist is not None:
            names.add(dist)
    requirements = {}
    for name in sorted(names):
        version = _installed_version(name)
        if version is not None:
            requirements[name] = version
    return EnvironmentLock(
        python=platform.python_version(),
        platform=sysconfig.get_platform(),
        requirements=requirements,
    )


def environment_drift(lock: EnvironmentLock) -> dict[str, tuple[str, str | None]]:
    """How this process differs from ``lock``, where it can change the model's behaviour.

    Returns:
        ``{name: (locked, installed)}`` for each differing locked distribution (``installed``
        is ``None`` when it is not installed), and ``python`` when the minor version differs.
    """
    drift: dict[str, tuple[str, str | None]] = {}
    running = platform.python_version()
    if _minor(running) != _minor(lock.python):
        drift["python"] = (lock.python, running)
    for name, locked in sorted(lock.requirements.items()):
        if name in _NOT_DRIFT:
            continue
        installed = _installed_version(name)
        if installed != locked:
            drift[name] = (locked, installed)
    return drift


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _installed_version(name: str) -> str | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    # ``metadata.version`` runs the whole METADATA file (scikit-learn's holds its README)
    # through the email parser: ~0.7 ms per distribution. The version is a header line, and
    # the headers end at the first blank line.
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.removeprefix("Version:").strip()
        if not line:
            break
    return dist.version


def _distribution_of(package: str) -> str | None:
    if package in _DISTRIBUTION_OF:
        return _DISTRIBUTION_OF[package]
    if package in sys.stdlib_module_names or package == "builtins":
        return None
    module = sys.modules.get(package)
    origin = getattr(module, "__file__", None)
    # Project code (a training module, say) is not an installed distribution: skip it without
    # paying for the scan below.
    if origin is None or not {"site-packages", "dist-packages"} & set(Path(origin).parts):
        return None
    try:
        return metadata.distribution(package).metadata["Name"]
    except metadata.PackageNotFoundError:
        dists = _packages_distributions().get(package)
        return dists[0] if dists else None


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    # ~0.1 s with 130 distributions installed, so only for import names that are not also
    # distribution names, and once per process.
    return metadata.packages_distributions()
