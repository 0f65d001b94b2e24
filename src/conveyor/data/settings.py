"""The settings of a data validation: what ``data_checks`` in ``policies.yaml`` may say.

Keys (all optional but ``reference``): ``reference``, ``current`` and ``schema`` (paths relative
to the project root), ``target`` and ``label_time`` (column names), ``shared_rows`` and
``block_on_column_drift`` (booleans), ``method`` (a drift test), the thresholds ``alpha``,
``min_effect``, ``distance_threshold``, ``psi_threshold``, ``drift_share``,
``max_missing_increase``, ``max_duplicate_increase``, ``outlier_z``, ``max_outlier_increase``,
``min_volume_ratio``, ``max_volume_ratio``, ``max_auc``, and ``block``/``warn`` (lists of check
names or prefixes whose severity they change). Every key and type is checked when the policy is
loaded, and an error names the key and the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError
from conveyor.data.drift import METHODS, DriftSettings
from conveyor.data.quality import QualitySettings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["DataGateSettings"]

_FLOAT_KEYS = (
    "alpha",
    "min_effect",
    "distance_threshold",
    "psi_threshold",
    "drift_share",
    "max_missing_increase",
    "max_duplicate_increase",
    "outlier_z",
    "max_outlier_increase",
    "min_volume_ratio",
    "max_volume_ratio",
    "max_auc",
)


@dataclass(frozen=True)
class DataGateSettings:
    """What to check and how strictly (``data_checks`` in ``policies.yaml``).

    Attributes:
        reference: The reference (training) dataset.
        current: The dataset to check; None lets the caller supply it (the evaluation data).
        target: The label column, for leakage checks.
        schema: A Table Schema JSON file; None infers one from the reference.
        label_time: The column holding when each label became known (future-timestamp check).
        shared_rows: Check for rows shared between reference and current (default true).
        block: Check names or prefixes made blocking; ``warn``: made warnings.
    """

    reference: Path
    current: Path | None = None
    target: str | None = None
    schema: Path | None = None
    label_time: str | None = None
    shared_rows: bool = True
    drift: DriftSettings = field(default_factory=DriftSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    max_auc: float = 0.99
    block: tuple[str, ...] = ()
    warn: tuple[str, ...] = ()

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], *, where: str, root: Path
    ) -> DataGateSettings:
        """Settings from a ``data_checks`` mapping; paths are relative to ``root``.

        Raises:
            ConfigError: an unknown key, a wrong type or value, naming ``where`` and the key.
        """
        if not isinstance(mapping, dict) and not hasattr(mapping, "items"):
            raise ConfigError(
                f"{where}: data_checks must be a mapping",
                hint="write e.g. `data_checks: {reference: data/train.csv, target: churned}`",
            )
        known = {
            "reference",
            "current",
            "target",
            "schema",
            "label_time",
            "shared_rows",
            "block_on_column_drift",
            "method",
            "block",
            "warn",
            *_FLOAT_KEYS,
        }
        for key in mapping:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                raise ConfigError(
                    f"{where}: unknown key '{key}' in data_checks",
                    hint=(f"did you mean '{close[0]}'? " if close else "")
                    + f"known keys: {', '.join(sorted(known))}",
                )
        if "reference" not in mapping:
            raise ConfigError(
                f"{where}: data_checks needs 'reference'",
                hint="set `reference:` to the training data file the checks compare against",
            )

        def path(key: str) -> Path | None:
            value = mapping.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: data_checks.{key} must be a path, not {value!r}")
            resolved = (root / value).resolve()
            if not resolved.exists():
                raise ConfigError(
                    f"{where}: data_checks.{key} {value} does not exist ({resolved})",
                    hint=f"point `{key}:` at an existing file, relative to {root}",
                )
            return resolved

        def text(key: str) -> str | None:
            value = mapping.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(
                    f"{where}: data_checks.{key} must be a column name, not {value!r}"
                )
            return value

        def flag(key: str, default: bool) -> bool:
            value = mapping.get(key, default)
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{where}: data_checks.{key} must be true or false, not {value!r}"
                )
            return value

        def names(key: str) -> tuple[str, ...]:
            value = mapping.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"{where}: data_checks.{key} must be a list of check names",
                    hint="e.g. [quality.duplicate_rows, drift]",
                )
            return tuple(value)

        numbers: dict[str, float] = {}
        for key in _FLOAT_KEYS:
            if key in mapping:
                value = mapping[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ConfigError(
                        f"{where}: data_checks.{key} must be a non-negative number, not {value!r}"
                    )
                numbers[key] = float(value)
        method = mapping.get("method", "auto")
        if method not in METHODS:
            raise ConfigError(
                f"{where}: data_checks.method {method!r} is not a drift test",
                hint=f"use one of: {', '.join(METHODS)}",
            )
        drift_fields = {f.name for f in dataclasses.fields(DriftSettings)}
        quality_fields = {f.name for f in dataclasses.fields(QualitySettings)}
        reference = path("reference")
        assert reference is not None
        return cls(
            reference=reference,
            current=path("current"),
            target=text("target"),
            schema=path("schema"),
            label_time=text("label_time"),
            shared_rows=flag("shared_rows", True),
            drift=DriftSettings(
                method=method,
                block_on_column_drift=flag("block_on_column_drift", False),
                **{k: v for k, v in numbers.items() if k in drift_fields},  # type: ignore[arg-type]
            ),
            quality=QualitySettings(**{k: v for k, v in numbers.items() if k in quality_fields}),
            max_auc=numbers.get("max_auc", 0.99),
            block=names("block"),
            warn=names("warn"),
        )
