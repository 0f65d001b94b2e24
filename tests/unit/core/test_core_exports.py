"""Every module of the core and the stores declares a sorted ``__all__`` of names it defines."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

import pytest

import conveyor.core
import conveyor.store

if TYPE_CHECKING:
    from types import ModuleType

PACKAGES = [conveyor.core, conveyor.store]


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            # Alembic's env.py and the revisions run only under Alembic.
            if "migrations" not in info.name.split("."):
                names.append(info.name)
    return sorted(names)


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then the rest: the order ruff's RUF022 keeps.
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.fixture(params=_modules())
def module(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_all_is_sorted_and_resolves(module: ModuleType) -> None:
    exported: list[str] = module.__all__
    assert exported == sorted(exported, key=_isort_key)
    assert len(set(exported)) == len(exported)
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


def test_module_has_a_docstring(module: ModuleType) -> None:
    assert module.__doc__
    if hasattr(module, "__path__"):  # a package: its docstring is one line
        assert "\n" not in module.__doc__.strip()


def test_the_walk_found_the_modules() -> None:
    found = _modules()
    for name in (
        "conveyor.core.digest",
        "conveyor.store.artifacts.remote",
        "conveyor.store.metadata.audit",
        "conveyor.store.metadata.migrations_runner",
    ):
        assert name in found
