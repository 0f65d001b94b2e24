"""Settings blocks of ``policies.yaml`` (``inference:``, ``rollout:``): one checker for all.

A block is a mapping of known keys to numbers. Each key is declared once as a :class:`Field`
(its type, range and an example); :func:`parse_block` refuses anything else with the file and
line and the example, before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Field", "check_values", "integer", "number", "parse_block"]


def number(value: Any) -> bool:
    # bool is an int to Python, but `p99_ms: true` is a mistake, not 1.
    return type(value) in (int, float) and math.isfinite(value)


def integer(value: Any) -> bool:
    return type(value) is int


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a block: what it converts to, the test and range its value must pass."""

    convert: type
    test: Callable[[Any], bool]
    expected: str  # what the value must be, in words
    example: str
    low: float
    high: float
    low_inclusive: bool = True
    high_inclusive: bool = True
    nullable: bool = True

    def in_range(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below


def check_values(
    values: Mapping[str, Any], fields: Mapping[str, Field], where: str, what: str
) -> None:
    """Refuse a value of the wrong type or out of range (``what``: ``"rollout"``...).

    Raises:
        ConfigError: ``"{where}: {what} key 'k' is ...; it must be ..."`` with an example.
    """
    for key, value in values.items():
        field = fields[key]
        hint = f"e.g. `{key}: {field.example}`"
        if value is None:
            if not field.nullable:
                raise ConfigError(f"{where}: {what} key {key!r} cannot be null", hint=hint)
            continue
        if not field.test(value):
            raise ConfigError(
                f"{where}: {what} key {key!r} is {value!r} "
                f"({type(value).__name__}); it must be {field.expected}",
                hint=hint,
            )
        if not field.in_range(value):
            raise ConfigError(
                f"{where}: {what} key {key!r} is {value!r}; it must be {field.expected}",
                hint=hint,
            )


def parse_block(
    mapping: Any, fields: Mapping[str, Field], where: str, *, what: str, block: str, example: str
) -> dict[str, Any]:
    """The checked, converted values of a block (keys given as null are left out).

    Args:
        what: The key family in messages: ``"rollout"`` gives "unknown rollout key".
        block: The block in messages: ``"the rollout block"``.
        example: A whole block, for the hint when it is not a mapping.

    Raises:
        ConfigError: not a mapping, an unknown key, or a bad value (see :func:`check_values`).
    """
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"{where}: {block} must be a mapping, not {type(mapping).__name__}",
            hint=f"e.g. `{example}`",
        )
    for key in mapping:
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown {what} key {key!r}",
                hint=f"the keys are: {', '.join(fields)}",
            )
    check_values(mapping, fields, where, what)
    return {key: fields[key].convert(value) for key, value in mapping.items() if value is not None}
