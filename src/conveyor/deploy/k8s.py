"""KServe ``InferenceService`` manifests for ``conveyor deploy --emit k8s``.

A Conveyor bundle is skops files plus a manifest in Conveyor's artifact store, which KServe's
built-in sklearn runtime cannot load; so the predictor is a *custom container* running
``conveyor serve`` pinned to one model version, reading the same metadata and artifact stores
that registered it. The manifest never holds a store URL: both come from a Kubernetes Secret by
reference (``secretKeyRef``), because URLs carry passwords, and a manifest lands in git.

One model is one ``InferenceService``, named from the model and *not* from the version: a new
version is a new revision of the same service, which is what KServe's canary rollout needs.
KServe splits traffic between the last revision rolled out at 100% and the latest one, by
``spec.predictor.canaryTrafficPercent``; every step of a rollout applies the same predictor with
only that number changed (a changed predictor would start yet another revision).

Choices, and why:

- ``serving.kserve.io/deploymentMode: Serverless`` by default. Canary traffic splitting exists
  only in KServe's Knative ("Serverless") mode; ``RawDeployment`` replaces the pods at once. The
  spelling ``Serverless`` is accepted by every KServe from 0.14 to 0.20 (0.16 added ``Knative``
  as its new name, keeping ``Serverless`` as an alias), so one manifest fits old and new clusters.
- ``minReplicas: 1``: scale-to-zero would answer a canary's first requests after a cold start
  (loading the bundle), and the rollout analysis would read that as a latency regression.
- Port 8080 named ``http1``: Knative routes by the port's name, ``h2c`` means HTTP/2 cleartext,
  and uvicorn speaks HTTP/1.1 only.
- ``PROTOCOL=v2`` in the container's environment: for a custom container this variable, not
  ``protocolVersion`` (which exists only on KServe's model-format predictors), is how KServe
  learns the server speaks the Open Inference Protocol v2.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from conveyor.core.atomic import atomic_write_bytes
from conveyor.core.env import CONVEYOR_ARTIFACTS, CONVEYOR_STORE
from conveyor.core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.core.config import Config

__all__ = [
    "ANNOTATION_PREFIX",
    "CONTAINER_PORT",
    "MAX_NAME_LENGTH",
    "ClusterOptions",
    "canary_step",
    "check_cluster_stores",
    "inference_service_name",
    "render_inference_service",
    "write_manifests",
]

#: Prefix of the labels and annotations Conveyor writes on the objects it renders.
ANNOTATION_PREFIX = "conveyor.dev/"
#: The port ``conveyor serve`` listens on inside the container; KServe's default for custom ones.
CONTAINER_PORT = 8080
#: Longest ``InferenceService`` name. In Serverless mode Knative names a Kubernetes Service
#: ``<name>-predictor-00001-private`` (a DNS-1035 label, at most 63 characters): 63 - 24 = 39.
MAX_NAME_LENGTH = 39

_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Kubernetes' resource.Quantity grammar, as the CRD's own pattern for requests and limits.
_QUANTITY = re.compile(
    r"[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
)
_SEPARATORS = re.compile(r"[-._]+")
# A component's host is "<name>-predictor-<namespace>.<domain>" under KServe's default domain
# template, and that first part is one DNS label.
_HOST_LABEL_MAX = 63

DeploymentMode = Literal["Serverless", "RawDeployment"]


@dataclass(frozen=True)
class ClusterOptions:
    """How the predictor runs on the cluster; the defaults suit one small scikit-learn model.

    Attributes:
        image: The container image with Conveyor installed (``conveyor`` on ``PATH``).
        namespace: Written into ``metadata.namespace`` when given; else ``kubectl -n`` decides.
        name: The ``InferenceService`` name, when the rule of :func:`inference_service_name`
            cannot make one from the model name.
        secret: The Secret whose keys ``CONVEYOR_STORE`` and ``CONVEYOR_ARTIFACTS`` hold the
            store URLs. Every other key of it (e.g. ``AWS_ACCESS_KEY_ID``) becomes an
            environment variable too, for the artifact store's credentials.
        service_account: Pod service account (e.g. one bound to a cloud role for S3 access).
        deployment_mode: ``Serverless`` (Knative revisions, canary) or ``RawDeployment``.
        cpu_request, memory_request, cpu_limit, memory_limit: Kubernetes quantities.
        min_replicas, max_replicas: Autoscaling bounds; ``max_replicas=None`` leaves KServe's.
    """

    image: str
    namespace: str | None = None
    name: str | None = None
    secret: str = "conveyor-stores"  # noqa: S105 - the name of a Secret, not a secret
    service_account: str | None = None
    deployment_mode: DeploymentMode = "Serverless"
    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    min_replicas: int = 1
    max_replicas: int | None = None


def inference_service_name(model: str, *, namespace: str | None = None) -> str:
    """The ``InferenceService`` name of a model, by one rule.

    The rule: lower-case the model name, replace each run of ``.``, ``_`` and ``-`` with one
    ``-``, and drop a ``-`` left at either end: ``Churn_Model.v2`` -> ``churn-model-v2``. The
    result must be a DNS-1035 label (start with a letter) of at most :data:`MAX_NAME_LENGTH`
    characters, so that every name Knative derives from it is valid too.

    Raises:
        ConfigError: the rule gives no valid name (the model name starts with a digit, or is too
            long); the hint says to pass an explicit name.
    """
    name = _SEPARATORS.sub("-", model.lower()).strip("-")
    try:
        return _check_name(name, namespace)
    except ConfigError as exc:
        raise ConfigError(
            f"model name {model!r} gives no valid Kubernetes name ({exc.message})",
            hint="choose the InferenceService name yourself with --name (ClusterOptions.name)",
        ) from exc


def _check_name(name: str, namespace: str | None) -> str:
    if not _DNS_1035.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a DNS-1035 label: lower-case letters, digits and '-', "
            "starting with a letter and ending with a letter or digit",
            hint="choose another name",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"{name!r} is {len(name)} characters, more than {MAX_NAME_LENGTH}",
            hint="choose a shorter name",
        )
    if namespace is not None and len(f"{name}-predictor-{namespace}") > _HOST_LABEL_MAX:
        raise ConfigError(
            f"'{name}-predictor-{namespace}' (the predictor's host label) is longer than "
            f"{_HOST_LABEL_MAX} characters",
            hint="choose a shorter name or namespace",
        )
    return name


def check_cluster_stores(config: Config) -> None:
    """Refuse stores that a pod on the cluster cannot reach.

    The server on the cluster must read the metadata store that registered the version being
    deployed (the version number means nothing in another store), so a SQLite file or a local
    artifact folder on this machine cannot be it.

    Raises:
        ConfigError: the metadata store is SQLite, or the artifact store is a local folder.
    """
    hint = (
        f"deploy from a project whose {CONVEYOR_STORE} is a shared database (postgresql://...) "
        f"and whose {CONVEYOR_ARTIFACTS} is object storage (s3://...), the ones the cluster reads"
    )
    if config.store.startswith("sqlite"):
        raise ConfigError(
            "the metadata store is a SQLite file on this machine, out of the cluster's reach",
            hint=hint,
        )
    if "://" not in config.artifacts:
        raise ConfigError(
            "the artifact store is a folder on this machine, out of the cluster's reach",
            hint=hint,
        )


def render_inference_service(
    config: Config,
    model: str,
    version: int,
    digest: str,
    options: ClusterOptions,
    *,
    canary_percent: int | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` that serves ``model`` pinned at ``version``.

    Args:
        config: The project configuration; its stores must be reachable from the cluster
            (:func:`check_cluster_stores`). Their URLs are *not* written: the pod reads them
            from ``options.secret``.
        model: The registered model name.
        version: The version to serve (``conveyor serve --model MODEL --version VERSION``).
        digest: The version's bundle digest, recorded in an annotation.
        options: Image, Secret, resources and mode.
        canary_percent: Percent of traffic for this version while the previous one keeps the
            rest; see :func:`canary_step`. ``None`` sends all traffic to it.

    Raises:
        ConfigError: the stores are local, no valid name can be made, or a setting of
            ``options`` is not valid for Kubernetes.
        UsageError: ``canary_percent`` is out of 0..100, or given in ``RawDeployment`` mode.
    """
    check_cluster_stores(config)
    if options.name is not None:
        name = _check_name(options.name, options.namespace)
    else:
        name = inference_service_name(model, namespace=options.namespace)
    _check_options(options)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"version must be a positive integer, not {version!r}")

    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": _label_value(config.project) or "conveyor",
        "app.kubernetes.io/managed-by": "conveyor",
        "app.kubernetes.io/version": str(version),
    }
    annotations = {
        f"{ANNOTATION_PREFIX}model": model,
        f"{ANNOTATION_PREFIX}version": str(version),
        f"{ANNOTATION_PREFIX}bundle-digest": digest,
        "serving.kserve.io/deploymentMode": options.deployment_mode,
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "prometheus.kserve.io/port": str(CONTAINER_PORT),
        "prometheus.kserve.io/path": "/metrics",
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if options.namespace is not None:
        metadata["namespace"] = options.namespace

    manifest: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": _predictor(model, version, options)},
    }
    if canary_percent is None:
        return manifest
    return canary_step(manifest, canary_percent)


def _predictor(model: str, version: int, options: ClusterOptions) -> dict[str, Any]:
    def probe(path: str, period: int, failures: int, delay: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": CONTAINER_PORT},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "failureThreshold": failures,
        }

    def from_secret(var: str) -> dict[str, Any]:
        return {"name": var, "valueFrom": {"secretKeyRef": {"name": options.secret, "key": var}}}

    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": options.image,
        "command": ["conveyor"],
        "args": [
            "serve",
            "--model",
            model,
            "--version",
            str(version),
            "--host",
            "0.0.0.0",  # noqa: S104 - inside a pod, every interface is the pod's own
            "--port",
            str(CONTAINER_PORT),
        ],
        # The two store URLs are named keys, so a Secret without them fails the pod at start
        # (CreateContainerConfigError) rather than the server at its first request.
        "env": [
            from_secret(CONVEYOR_STORE),
            from_secret(CONVEYOR_ARTIFACTS),
            {"name": "PROTOCOL", "value": "v2"},
        ],
        "envFrom": [{"secretRef": {"name": options.secret}}],
        "ports": [{"containerPort": CONTAINER_PORT, "name": "http1", "protocol": "TCP"}],
        "readinessProbe": probe("/v2/health/ready", period=5, failures=3, delay=0),
        # The pinned version loads before the server listens: give a slow load a minute
        # before the kubelet takes the silence for a hang.
        "livenessProbe": probe("/v2/health/live", period=10, failures=6, delay=10),
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
        },
    }
    predictor: dict[str, Any] = {"minReplicas": options.min_replicas, "containers": [container]}
    if options.max_replicas is not None:
        predictor["maxReplicas"] = options.max_replicas
    if options.service_account is not None:
        predictor["serviceAccountName"] = options.service_account
    return predictor


def _check_options(options: ClusterOptions) -> None:
    if not options.image or any(c.isspace() for c in options.image):
        raise ConfigError(
            f"container image {options.image!r} is not valid",
            hint="give one image reference, e.g. --image registry.example.com/churn:1.4",
        )
    if options.namespace is not None and not _DNS_1035.fullmatch(options.namespace):
        raise ConfigError(
            f"namespace {options.namespace!r} is not a DNS-1035 label",
            hint="use lower-case letters, digits and '-', starting with a letter",
        )
    for what, value in (("Secret", options.secret), ("service account", options.service_account)):
        if value is not None and not (len(value) <= 253 and _DNS_1123_SUBDOMAIN.fullmatch(value)):
            raise ConfigError(
                f"{what} name {value!r} is not a valid Kubernetes name",
                hint="use lower-case letters, digits, '-' and '.'",
            )
    for field in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
        value = getattr(options, field)
        if not _QUANTITY.fullmatch(value):
            raise ConfigError(
                f"{field.replace('_', ' ')} {value!r} is not a Kubernetes quantity",
                hint="write e.g. 500m or 2 for CPU, 512Mi or 1Gi for memory",
            )
    if options.min_replicas < 0 or (
        options.max_replicas is not None and options.max_replicas < max(options.min_replicas, 1)
    ):
        raise ConfigError(
            f"replicas {options.min_replicas}..{options.max_replicas} is not a valid range",
            hint="use 0 <= min replicas <= max replicas, with max replicas at least 1",
        )
    if options.deployment_mode not in ("Serverless", "RawDeployment"):
        raise ConfigError(
            f"deployment mode {options.deployment_mode!r} is not known",
            hint="use Serverless or RawDeployment",
        )


def _label_value(text: str) -> str:
    """``text`` made a valid label value (63 characters of ``[A-Za-z0-9._-]``), or ``""``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def canary_step(manifest: dict[str, Any], percent: int) -> dict[str, Any]:
    """The manifest for one step of a canary rollout: a copy of ``manifest`` with its percent.

    Apply the steps in order (e.g. 5, 25, 50, 100); everything but the percentage is
    unchanged, so KServe keeps the same two revisions and only moves traffic. ``percent`` is the
    share of the latest revision (the version ``manifest`` serves); the previous revision rolled
    out at 100% keeps the rest. ``0`` rolls back: all traffic returns to the previous revision.
    ``100`` promotes: the field is removed, as KServe documents, and the latest revision becomes
    the one rolled out.

    Raises:
        UsageError: ``percent`` is not an integer from 0 to 100, or ``manifest`` is in
            ``RawDeployment`` mode, which has no revisions to split traffic between.
    """
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise UsageError(
            f"canary percentage {percent!r} is not an integer from 0 to 100",
            hint="give steps like --canary 5,25,50,100",
        )
    mode = manifest["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode")
    if mode not in (None, "Serverless", "Knative"):
        raise UsageError(
            f"a canary needs KServe's Serverless mode; {mode} replaces the pods at once",
            hint="drop --canary, or deploy in Serverless mode",
        )
    step = copy.deepcopy(manifest)
    predictor = step["spec"]["predictor"]
    if percent == 100:
        predictor.pop("canaryTrafficPercent", None)
    else:
        predictor["canaryTrafficPercent"] = percent
    return step


def _file_name(doc: dict[str, Any]) -> str:
    name = doc["metadata"]["name"]
    kind = str(doc["kind"]).lower()
    percent = doc.get("spec", {}).get("predictor", {}).get("canaryTrafficPercent")
    return f"{name}.{kind}.yaml" if percent is None else f"{name}.{kind}.canary-{percent:03d}.yaml"


def write_manifests(docs: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write each document to its own YAML file in ``folder``, atomically; return the paths.

    A file is named ``<name>.<kind>.yaml``, or ``<name>.<kind>.canary-<percent>.yaml`` for a
    canary step (``churn.inferenceservice.canary-005.yaml``), so the steps sort in order. Keys
    are written sorted, so the same manifest gives the same bytes (clean diffs in git).

    Raises:
        UsageError: two documents would be written to the same file, or ``folder`` cannot be
            written.
    """
    names = [_file_name(doc) for doc in docs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(
            f"two manifests would both be written to {duplicates[0]}",
            hint="give each canary step once",
        )
    paths = []
    for doc, file_name in zip(docs, names, strict=True):
        text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=True)
        path = Path(folder) / file_name
        try:
            atomic_write_bytes(path, text.encode())
        except OSError as exc:
            raise UsageError(
                f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable --out folder"
            ) from exc
        paths.append(path)
    return paths
