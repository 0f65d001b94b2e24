"""The registry's public surface: an explicit, sorted ``__all__`` of documented names."""

from __future__ import annotations

import conveyor.registry as registry


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions: the order ruff's RUF022 keeps.
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_all_is_sorted_and_complete() -> None:
    assert registry.__all__ == sorted(registry.__all__, key=_isort_key)
    assert len(set(registry.__all__)) == len(registry.__all__)
    for name in registry.__all__:
        assert hasattr(registry, name), name


def test_every_export_is_documented() -> None:
    for name in registry.__all__:
        obj = getattr(registry, name)
        if callable(obj):
            assert obj.__doc__, f"conveyor.registry.{name} has no docstring"
            assert obj.__module__.startswith("conveyor.registry."), name


def test_stages_in_order() -> None:
    assert registry.STAGES == ("experimental", "candidate", "production", "archived")
