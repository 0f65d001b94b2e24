"""The environment lock: exact versions from installed metadata, without a subprocess."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from typing import TYPE_CHECKING

from conveyor.packaging import EnvironmentLock, lock_environment
from conveyor.packaging._env import BASE_DISTRIBUTIONS, environment_drift

if TYPE_CHECKING:
    import pytest


def test_the_lock_pins_what_an_sklearn_model_needs() -> None:
    lock = lock_environment(["sklearn", "numpy", "builtins"])

    assert lock.python == platform.python_version()
    assert set(BASE_DISTRIBUTIONS) <= set(lock.requirements)
    assert lock.requirements["scikit-learn"] == metadata.version("scikit-learn")
    assert lock.requirements["numpy"] == metadata.version("numpy")


def test_the_lock_adds_the_distribution_of_a_third_party_package() -> None:
    # yaml is imported by conveyor itself; its distribution is named PyYAML.
    lock = lock_environment(["yaml"])

    assert lock.requirements["PyYAML"] == metadata.version("PyYAML")


def test_standard_library_and_project_code_are_not_requirements() -> None:
    lock = lock_environment(["collections", "builtins", "training", __name__.partition(".")[0]])

    assert set(lock.requirements) == set(BASE_DISTRIBUTIONS)


def test_requirements_txt_is_sorted_pins() -> None:
    lock = EnvironmentLock("3.11.7", "linux-x86_64", {"scipy": "1.17.1", "numpy": "2.4.6"})

    assert lock.requirements_txt() == "numpy==2.4.6\nscipy==1.17.1\n"


def test_locking_runs_no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the environment lock must not start a process")

    monkeypatch.setattr(subprocess, "Popen", refuse)

    assert lock_environment(["sklearn"]).requirements["skops"] == metadata.version("skops")


def test_no_drift_from_a_fresh_lock() -> None:
    assert environment_drift(lock_environment(["sklearn"])) == {}


def test_drift_names_differing_versions_but_not_conveyor() -> None:
    fresh = lock_environment()
    old = EnvironmentLock(
        python="2.7.18",
        platform=fresh.platform,
        requirements={
            **fresh.requirements,
            "scikit-learn": "0.24.2",
            "conveyor": "0.0.1",
            "not-installed-dist": "1.0",
        },
    )

    assert environment_drift(old) == {
        "python": ("2.7.18", platform.python_version()),
        "scikit-learn": ("0.24.2", metadata.version("scikit-learn")),
        "not-installed-dist": ("1.0", None),
    }
