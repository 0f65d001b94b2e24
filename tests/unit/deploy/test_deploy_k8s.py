"""KServe manifests: valid against KServe's own CRD schema, named by one rule, free of secrets.

The schema is KServe's published ``InferenceService`` CRD (``tests/data/kserve/README.md`` says
which release and how it was extracted); the validator below reads its Kubernetes extensions the
way the API server and ``kubectl apply`` do, and a broken manifest is shown to fail it.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conveyor.core.config import Config
from conveyor.core.errors import ConfigError, UsageError
from conveyor.deploy.k8s import (
    MAX_NAME_LENGTH,
    ClusterOptions,
    canary_step,
    check_cluster_stores,
    inference_service_name,
    render_inference_service,
    write_manifests,
)

SCHEMA = Path(__file__).parents[2] / "data" / "kserve" / "inferenceservice-v1beta1.schema.json.gz"
DIGEST = "blake3:" + "ab" * 32
PASSWORD = "Tr0ub4dor-s3cret"
IMAGE = "registry.example.com/churn-server:1.4"


# ------------------------------------------------------------------ the validator


def _strict(node: Any) -> Any:
    """The schema as ``kubectl apply`` (strict field validation) enforces it; see the README."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: Any) -> Any:
    # ``x-kubernetes-list-type: map``: no two items may share the values of the key fields
    # (the API server rejects such a list as a duplicate).
    if not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        key = tuple(json.dumps(item.get(k, _default(schema, k))) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entry for keys {keys}: {key}")
        seen.add(key)


def _default(schema: dict[str, Any], key: str) -> Any:
    return schema.get("items", {}).get("properties", {}).get(key, {}).get("default")


_INT_RANGES = {"int32": 2**31, "int64": 2**63}


def _int_format(name: str) -> Any:
    def check(value: object) -> bool:
        return not isinstance(value, int) or -_INT_RANGES[name] <= value < _INT_RANGES[name]

    return check


@functools.cache
def _validator() -> Any:
    schema = _strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    checker = jsonschema.FormatChecker()
    for name in _INT_RANGES:
        checker.checks(name)(_int_format(name))
    cls = jsonschema.validators.extend(
        jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
    )
    cls.check_schema(schema)
    return cls(schema, format_checker=checker)


_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = _LABEL_VALUE
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _meta_errors(meta: dict[str, Any]) -> list[str]:
    """ObjectMeta rules the API server applies (the CRD schema leaves ``metadata`` open)."""
    errors = []
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", meta.get("name", "")) or (
        len(meta["name"]) > 63
    ):
        errors.append(f"name {meta.get('name')!r}")
    for key, value in meta.get("labels", {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not (len(prefix) <= 253 and _PREFIX.fullmatch(prefix)):
            errors.append(f"label key {key!r}")
        if not (0 < len(name) <= 63 and _LABEL_NAME.fullmatch(name)):
            errors.append(f"label key {key!r}")
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.fullmatch(value)):
            errors.append(f"label value {value!r}")
    for key, value in meta.get("annotations", {}).items():
        if not isinstance(value, str):
            errors.append(f"annotation {key!r} is not a string")
    return errors


def _errors(doc: dict[str, Any]) -> list[str]:
    found = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(doc)]
    return found + _meta_errors(doc["metadata"])


# ------------------------------------------------------------------ fixtures


def _config(tmp_path: Path, *, store: str | None = None, artifacts: str | None = None) -> Config:
    return Config(
        root=tmp_path,
        project="churn-project",
        store=store or f"postgresql+psycopg://conveyor:{PASSWORD}@db.internal:5432/conveyor",
        artifacts=artifacts or "s3://models-bucket/conveyor",
    )


def _render(
    tmp_path: Path, model: str = "churn", canary: int | None = None, **options: Any
) -> dict[str, Any]:
    return render_inference_service(
        _config(tmp_path),
        model,
        7,
        DIGEST,
        ClusterOptions(image=IMAGE, **options),
        canary_percent=canary,
    )


# ------------------------------------------------------------------ schema validity


@pytest.mark.parametrize(
    ("canary", "options"),
    [
        (None, {}),
        (5, {}),
        (0, {"namespace": "models"}),
        (None, {"deployment_mode": "RawDeployment", "max_replicas": 4, "min_replicas": 2}),
        (25, {"service_account": "conveyor-s3", "secret": "churn.stores", "cpu_limit": "2"}),
    ],
)
def test_rendered_manifest_is_valid_for_kserve(
    tmp_path: Path, canary: int | None, options: dict[str, Any]
) -> None:
    doc = _render(tmp_path, canary=canary, **options)
    assert _errors(doc) == []


def test_manifest_serves_the_pinned_version_over_v2(tmp_path: Path) -> None:
    doc = _render(tmp_path, canary=5)
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = doc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 5
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == IMAGE
    assert container["command"] == ["conveyor"]
    args = container["args"]
    assert args[0] == "serve"
    assert args[args.index("--model") + 1] == "churn"
    assert args[args.index("--version") + 1] == "7"
    assert args[args.index("--port") + 1] == "8080"
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    annotations = doc["metadata"]["annotations"]
    assert annotations["conveyor.dev/model"] == "churn"
    assert annotations["conveyor.dev/version"] == "7"
    assert annotations["conveyor.dev/bundle-digest"] == DIGEST
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


def test_store_urls_come_from_the_secret_by_reference(tmp_path: Path) -> None:
    (container,) = _render(tmp_path, secret="churn-stores")["spec"]["predictor"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {
        "CONVEYOR_STORE": {"name": "churn-stores", "key": "CONVEYOR_STORE"},
        "CONVEYOR_ARTIFACTS": {"name": "churn-stores", "key": "CONVEYOR_ARTIFACTS"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "churn-stores"}}]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "predictor", "canaryTrafficPercent"), "5"),
        (("spec", "predictor", "canaryTrafficPercent"), True),
        (("spec", "predictor", "canaryTraficPercent"), 5),  # misspelt: unknown field
        (("spec", "predictor", "containers", 0, "imagePullPolicyy"), "Always"),
        (("spec", "predictor", "containers", 0, "resources", "limits", "memory"), "1 GB"),
        (("spec", "predictor", "minReplicas"), 2**31),
        (("spec", "predictor", "containers", 0, "ports", 0, "containerPort"), "8080"),
        (("spec", "predictor", "scaleMetric"), "latency"),
        (("metadata", "name"), "Churn_Model"),
        (("metadata", "labels", "app.kubernetes.io/version"), "v" * 64),
    ],
)
def test_validator_rejects_a_broken_manifest(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    doc = _render(tmp_path, canary=5)
    assert _errors(doc) == []
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(doc) != []


def test_validator_rejects_duplicate_ports(tmp_path: Path) -> None:
    doc = _render(tmp_path)
    ports = doc["spec"]["predictor"]["containers"][0]["ports"]
    ports.append({"containerPort": 8080, "name": "metrics"})  # protocol defaults to TCP
    assert _errors(doc) != []


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("churn", "churn"),
        ("Churn_Model.v2", "churn-model-v2"),
        ("a--b__c..d", "a-b-c-d"),
        ("churn-", "churn"),
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
    ],
)
def test_name_rule(model: str, name: str) -> None:
    assert inference_service_name(model) == name


@pytest.mark.parametrize("model", ["3d-model", "9lives", "x" * (MAX_NAME_LENGTH + 1)])
def test_name_rule_refuses_what_it_cannot_name(model: str) -> None:
    with pytest.raises(ConfigError) as info:
        inference_service_name(model)
    assert model in info.value.message
    assert info.value.hint is not None
    assert "--name" in info.value.hint


def test_explicit_name_replaces_the_rule(tmp_path: Path) -> None:
    doc = _render(tmp_path, model="3d-model", name="model-3d")
    assert doc["metadata"]["name"] == "model-3d"
    assert doc["metadata"]["annotations"]["conveyor.dev/model"] == "3d-model"
    with pytest.raises(ConfigError):
        _render(tmp_path, name="Model_3d")


def test_name_and_namespace_must_fit_the_predictor_host(tmp_path: Path) -> None:
    name = "x" * MAX_NAME_LENGTH
    # 39 + len("-predictor-") + 13 = 63: fits; one more character of namespace does not.
    assert inference_service_name(name, namespace="n" * 13) == name
    with pytest.raises(ConfigError, match="host label"):
        inference_service_name(name, namespace="n" * 14)


# ------------------------------------------------------------------ canary


@pytest.mark.parametrize("percent", [-1, 101, True, 5.0, "5", None])
def test_canary_percent_out_of_bounds_is_refused(tmp_path: Path, percent: Any) -> None:
    doc = _render(tmp_path)
    with pytest.raises(UsageError, match="0 to 100"):
        canary_step(doc, percent)


def test_canary_steps_change_only_the_percentage(tmp_path: Path) -> None:
    first = _render(tmp_path, canary=5)
    steps = {p: canary_step(first, p) for p in (0, 1, 25, 50, 99, 100)}
    assert steps[0]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert steps[99]["spec"]["predictor"]["canaryTrafficPercent"] == 99
    # 100 promotes: the field goes, as KServe documents; the rest is byte for byte the same,
    # so applying a step never starts another revision.
    assert "canaryTrafficPercent" not in steps[100]["spec"]["predictor"]
    assert steps[100] == _render(tmp_path)
    for step in steps.values():
        assert _errors(step) == []
        step["spec"]["predictor"].pop("canaryTrafficPercent", None)
        assert step == steps[100]
    assert first["spec"]["predictor"]["canaryTrafficPercent"] == 5  # the input is not changed


def test_canary_needs_serverless_mode(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Serverless"):
        _render(tmp_path, canary=5, deployment_mode="RawDeployment")
    with pytest.raises(UsageError, match="Serverless"):
        canary_step(_render(tmp_path, deployment_mode="RawDeployment"), 5)


# ------------------------------------------------------------------ secrets and stores


def test_no_secret_reaches_the_written_yaml(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        store=f"postgresql+psycopg://conveyor:{PASSWORD}@db.internal:5432/conveyor",
        artifacts=f"s3://conveyor:{PASSWORD}@minio.internal/models",
    )
    first = render_inference_service(
        config, "churn", 7, DIGEST, ClusterOptions(image=IMAGE), canary_percent=5
    )
    docs = [first, canary_step(first, 25), canary_step(first, 100)]
    paths = write_manifests(docs, tmp_path / "out")
    text = "".join(p.read_text() for p in paths)
    assert "CONVEYOR_STORE" in text  # the variables are there, by reference
    for secret in (PASSWORD, "db.internal", "minio.internal", "postgresql", "s3://"):
        assert secret not in text


@pytest.mark.parametrize(
    ("store", "artifacts", "what"),
    [
        ("sqlite:////data/conveyor.db", "s3://bucket/models", "SQLite"),
        ("postgresql://db/conveyor", "/srv/conveyor/artifacts", "folder"),
    ],
)
def test_stores_out_of_the_clusters_reach_are_refused(
    tmp_path: Path, store: str, artifacts: str, what: str
) -> None:
    config = _config(tmp_path, store=store, artifacts=artifacts)
    with pytest.raises(ConfigError, match=what) as info:
        check_cluster_stores(config)
    assert info.value.hint is not None
    with pytest.raises(ConfigError, match=what):
        render_inference_service(config, "churn", 7, DIGEST, ClusterOptions(image=IMAGE))


@pytest.mark.parametrize(
    "options",
    [
        {"image": "two words"},
        {"memory_limit": "1 GB"},
        {"cpu_request": "half"},
        {"namespace": "Models"},
        {"secret": "Stores!"},
        {"min_replicas": 3, "max_replicas": 2},
    ],
)
def test_invalid_cluster_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    settings = {"image": IMAGE} | options
    with pytest.raises(ConfigError):
        render_inference_service(_config(tmp_path), "churn", 7, DIGEST, ClusterOptions(**settings))


# ------------------------------------------------------------------ files


def test_yaml_round_trips_and_is_stable(tmp_path: Path) -> None:
    first = _render(tmp_path, canary=5)
    docs = [first, canary_step(first, 50), canary_step(first, 100)]
    paths = write_manifests(docs, tmp_path / "out")
    assert [p.name for p in paths] == [
        "churn.inferenceservice.canary-005.yaml",
        "churn.inferenceservice.canary-050.yaml",
        "churn.inferenceservice.yaml",
    ]
    assert [yaml.safe_load(p.read_text()) for p in paths] == docs
    before = [p.read_bytes() for p in paths]
    assert write_manifests(docs, tmp_path / "out") == paths
    assert [p.read_bytes() for p in paths] == before
    assert before[0].startswith(b"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_two_documents_for_one_file_are_refused(tmp_path: Path) -> None:
    doc = _render(tmp_path, canary=5)
    with pytest.raises(UsageError, match="canary-005"):
        write_manifests([doc, canary_step(doc, 5)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unwritable_folder_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write"):
        write_manifests([_render(tmp_path)], blocker)
