"""Feature and service versions: what changes them, what does not, and bad definitions."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

import conveyor.features as features
from conveyor.core.errors import ValidationError
from conveyor.features import Feature, FeatureService


def spend(df, factor=1.0):  # type: ignore[no-untyped-def]
    return df["amount"] * factor


def spend_commented(df, factor=1.0):  # type: ignore[no-untyped-def]
    """Same logic, with a docstring, a comment and another name."""
    # Comments and layout are not logic.
    return df["amount"] * (factor)


def spend_changed(df, factor=1.0):  # type: ignore[no-untyped-def]
    return df["amount"] * factor + 1


def _feature(transform, **kwargs):  # type: ignore[no-untyped-def]
    values = {"name": "spend", "entity": "customer_id", "dtype": "float64", "timezone": "UTC"}
    return Feature(transform=transform, **{**values, **kwargs})


def test_version_ignores_comments_docstring_and_function_name() -> None:
    assert _feature(spend).version == _feature(spend_commented).version


def test_any_change_of_logic_or_inputs_gives_a_new_version() -> None:
    base = _feature(spend)
    changed = [
        _feature(spend_changed),
        _feature(spend, params={"factor": 2.0}),
        _feature(spend, dtype="float32"),
        _feature(spend, entity="account_id"),
        _feature(spend, source="data/orders.csv"),
        _feature(spend, timestamp="ordered_at"),
        _feature(spend, timezone="Europe/Paris"),
    ]
    versions = {f.version for f in changed}
    assert base.version not in versions
    assert len(versions) == len(changed)
    assert base.version.startswith("blake3:")
    assert len(base.version) == 71


def test_ttl_and_owner_do_not_change_the_version() -> None:
    base = _feature(spend)
    assert _feature(spend, ttl=dt.timedelta(days=3), owner="ana").version == base.version


def test_lambdas_are_versioned_by_their_syntax() -> None:
    one = _feature(lambda df: df["amount"] * 2)
    two = _feature(lambda df: df["amount"] * 3)
    assert one.version != two.version


def test_service_version_is_the_digest_of_exact_feature_versions() -> None:
    count = Feature("n", entity="customer_id", dtype="int64", transform=spend, timezone="UTC")
    service = FeatureService("churn", [_feature(spend), count])
    reordered = FeatureService("churn", [count, _feature(spend)])
    bumped = FeatureService("churn", [_feature(spend_changed), count])
    assert service.version == reordered.version
    assert service.version != bumped.version
    assert service.manifest_entry() == {
        "service": "churn",
        "version": service.version,
        "entity": "customer_id",
        "features": [_feature(spend).ref, count.ref],
    }


def test_bad_definitions_are_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="dtype 'decimal'") as bad:
        _feature(spend, dtype="decimal")
    assert bad.value.hint is not None
    assert "float64" in bad.value.hint
    other = Feature("m", entity="account_id", dtype="int64", transform=spend)
    with pytest.raises(ValidationError, match="mixes entity keys: account_id, customer_id"):
        FeatureService("s", [_feature(spend), other])
    with pytest.raises(ValidationError, match="twice"):
        FeatureService("s", [_feature(spend), _feature(spend_changed)])
    with pytest.raises(ValidationError, match="ttl"):
        _feature(spend, ttl=dt.timedelta(0))


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert features.__all__ == sorted(features.__all__)
    for name in features.__all__:
        assert getattr(features, name) is not None


def test_importing_definitions_does_not_import_heavy_libraries() -> None:
    code = (
        "import json, sys\n"
        "from conveyor.features import Feature, FeatureService\n"
        "import conveyor.cli.features\n"
        "heavy = ['numpy', 'pandas', 'pyarrow', 'duckdb', 'redis', 'sqlalchemy']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
