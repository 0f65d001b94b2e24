"""Feature store: versioned feature definitions, point-in-time training sets, online serving.

Importing this package is cheap: the definitions (``Feature``, ``FeatureService``) and errors
import neither pandas nor DuckDB; everything else is imported on first use, because users'
``features/*.py`` import it and ``conveyor --help`` must stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.features._definition import (
    Feature,
    FeatureRecord,
    FeatureService,
    ServiceRecord,
)
from conveyor.features.errors import (
    FeatureMismatchError,
    MissingColumnError,
    NullEntityError,
    TimezonePolicyError,
    UnknownFeatureError,
)

if TYPE_CHECKING:
    from conveyor.features._governance import (
        FeatureSkew,
        check_serving_features,
        skew_check,
        skew_report,
    )
    from conveyor.features._lookup import FeatureLookup, MissingEntityError
    from conveyor.features._offline import OfflineStore, point_in_time_join
    from conveyor.features._online import (
        OnlineStore,
        RedisOnlineStore,
        SQLiteOnlineStore,
        open_online_store,
    )
    from conveyor.features._records import (
        get_feature,
        get_service,
        link_model,
        list_features,
        list_services,
        register_feature,
        register_service,
    )
    from conveyor.features._serving import Materialized, get_online_features, materialize
    from conveyor.features._store import Applied, Definitions, FeatureStore, load_definitions

__all__ = [
    "Applied",
    "Definitions",
    "Feature",
    "FeatureLookup",
    "FeatureMismatchError",
    "FeatureRecord",
    "FeatureService",
    "FeatureSkew",
    "FeatureStore",
    "Materialized",
    "MissingColumnError",
    "MissingEntityError",
    "NullEntityError",
    "OfflineStore",
    "OnlineStore",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "ServiceRecord",
    "TimezonePolicyError",
    "UnknownFeatureError",
    "check_serving_features",
    "get_feature",
    "get_online_features",
    "get_service",
    "link_model",
    "list_features",
    "list_services",
    "load_definitions",
    "materialize",
    "open_online_store",
    "point_in_time_join",
    "register_feature",
    "register_service",
    "skew_check",
    "skew_report",
]

_LAZY = {
    "Applied": "conveyor.features._store",
    "Definitions": "conveyor.features._store",
    "FeatureLookup": "conveyor.features._lookup",
    "FeatureSkew": "conveyor.features._governance",
    "FeatureStore": "conveyor.features._store",
    "Materialized": "conveyor.features._serving",
    "MissingEntityError": "conveyor.features._lookup",
    "OfflineStore": "conveyor.features._offline",
    "OnlineStore": "conveyor.features._online",
    "RedisOnlineStore": "conveyor.features._online",
    "SQLiteOnlineStore": "conveyor.features._online",
    "check_serving_features": "conveyor.features._governance",
    "get_feature": "conveyor.features._records",
    "get_online_features": "conveyor.features._serving",
    "get_service": "conveyor.features._records",
    "link_model": "conveyor.features._records",
    "list_features": "conveyor.features._records",
    "list_services": "conveyor.features._records",
    "load_definitions": "conveyor.features._store",
    "materialize": "conveyor.features._serving",
    "open_online_store": "conveyor.features._online",
    "point_in_time_join": "conveyor.features._offline",
    "register_feature": "conveyor.features._records",
    "register_service": "conveyor.features._records",
    "skew_check": "conveyor.features._governance",
    "skew_report": "conveyor.features._governance",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
