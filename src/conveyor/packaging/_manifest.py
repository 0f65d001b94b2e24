"""The bundle manifest: one YAML document naming every file of a bundle by digest.

Its digest is the bundle's identity, so it holds nothing that changes between two packagings of
the same model: no timestamp, no version number (the registry assigns both). Keys are written in
a fixed order and every mapping inside sorted, so equal manifests are equal bytes.

    bundle_format: 1
    name: churn
    flavor: sklearn
    signature: {inputs: [...], outputs: [...]}
    metrics: {roc_auc: 0.87}
    params: {seed: 7}
    datasets: {train: blake3:...}
    features: {service: churn, version: blake3:..., entity: customer_id,
               features: [amount_30d@blake3:..., ...],        (only when the model has them)
               ttl_seconds: {amount_30d: 86400.0}}            (only when a feature has a TTL)
    run_id: 0193...
    files:
      env/requirements.txt: {digest: blake3:..., size: 120}
      model/input_example.parquet: {digest: blake3:..., size: 3094}
      model/model.skops: {digest: blake3:..., size: 88161}
    env: {python: 3.11.7, platform: linux-x86_64, requirements: {numpy: 2.4.6, ...}}
    skops: {trusted: [sklearn.tree._tree.Tree]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as _PydanticValidationError

from conveyor.core.digest import parse_digest
from conveyor.core.errors import ValidationError
from conveyor.packaging._env import EnvironmentLock
from conveyor.packaging._signature import Signature
from conveyor.store.artifacts import ArtifactRef

__all__ = [
    "BUNDLE_FORMAT",
    "EXAMPLE_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "REQUIREMENTS_FILE",
    "Manifest",
    "plain_metrics",
    "plain_params",
]

BUNDLE_FORMAT = 1
MANIFEST_FILE = "manifest.yaml"
MODEL_FILE = "model/model.skops"
EXAMPLE_FILE = "model/input_example.parquet"
REQUIREMENTS_FILE = "env/requirements.txt"


@dataclass(frozen=True)
class Manifest:
    """What a bundle is: its model's name, signature, provenance, files and environment.

    Attributes:
        name: Registered model name.
        flavor: How the model is saved and called (``sklearn``).
        signature: Inputs and outputs.
        files: Path inside the bundle -> digest and size of its bytes.
        env: Python, platform and exact package versions it was packaged with.
        trusted_types: Types beyond skops' defaults that ``model/model.skops`` holds, all that
            loading it may construct.
        metrics: Evaluation metrics of the training run.
        params: Parameters of the training run.
        datasets: Role (``train``, ``eval``) -> dataset version digest.
        run_id: The pipeline run that produced the model.
        features: The feature service the model is served with: ``service``, ``version``,
            ``entity`` (the key a request gives) and ``features`` (each ``name@version``),
            and ``ttl_seconds`` (feature name -> seconds) when a feature has a TTL: what the
            server needs to look the features up itself. Absent from the YAML when None, so
            bundles without features keep their digests.
        created_by: Who packaged it; part of the digest, so usually left out (the registry
            records who registered each version).
        bundle_format: Version of this layout.
    """

    name: str
    flavor: str
    signature: Signature
    files: dict[str, ArtifactRef]
    env: EnvironmentLock
    trusted_types: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    created_by: str | None = None
    bundle_format: int = BUNDLE_FORMAT
    features: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain data, keys in the order they are written."""
        doc: dict[str, Any] = {
            "bundle_format": self.bundle_format,
            "name": self.name,
            "flavor": self.flavor,
            "signature": self.signature.to_dict(),
            "metrics": dict(sorted(self.metrics.items())),
            "params": _sorted(self.params),
            "datasets": dict(sorted(self.datasets.items())),
        }
        if self.features is not None:
            doc["features"] = {
                "service": self.features["service"],
                "version": self.features["version"],
                "entity": self.features["entity"],
                "features": sorted(self.features["features"]),
            }
            ttls = self.features.get("ttl_seconds")
            if ttls:  # only when a feature has one: older entries keep their bytes
                doc["features"]["ttl_seconds"] = dict(sorted(ttls.items()))
        doc["run_id"] = self.run_id
        if self.created_by is not None:
            doc["created_by"] = self.created_by
        doc["files"] = {
            path: {"digest": ref.digest, "size": ref.size}
            for path, ref in sorted(self.files.items())
        }
        doc["env"] = self.env.to_dict()
        doc["skops"] = {"trusted": sorted(self.trusted_types)}
        return doc

    def to_yaml(self) -> bytes:
        """The manifest's bytes; equal manifests give equal bytes."""
        text = yaml.dump(
            self.to_dict(),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
        return text.encode()

    @classmethod
    def from_yaml(cls, data: bytes, *, source: str = "manifest") -> Manifest:
        """Parse and check a manifest written by :meth:`to_yaml`.

        Args:
            data: The YAML bytes.
            source: What to call them in messages ("artifact blake3:...").

        Raises:
            ValidationError: naming the key that is missing or wrong, or a format newer than
                this version of Conveyor reads.
        """
        try:
            doc = yaml.safe_load(data.decode())
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise _not_a_manifest(source, f"not YAML text ({exc})") from exc
        if not isinstance(doc, dict):
            raise _not_a_manifest(source, f"a {type(doc).__name__}, not a mapping")
        found = doc.get("bundle_format")
        if isinstance(found, int) and found > BUNDLE_FORMAT:
            raise ValidationError(
                f"{source} is a bundle of format {found}; this Conveyor reads up to "
                f"{BUNDLE_FORMAT}",
                hint="upgrade conveyor to load it",
            )
        try:
            parsed = _ManifestDoc.model_validate(doc)
            return cls(
                name=parsed.name,
                flavor=parsed.flavor,
                signature=Signature.from_dict(parsed.signature.model_dump()),
                files={
                    p: ArtifactRef(parse_digest(f.digest), f.size) for p, f in parsed.files.items()
                },
                env=EnvironmentLock(**parsed.env.model_dump()),
                trusted_types=tuple(parsed.skops.trusted),
                metrics=parsed.metrics,
                params=parsed.params,
                datasets=parsed.datasets,
                run_id=parsed.run_id,
                created_by=parsed.created_by,
                bundle_format=parsed.bundle_format,
                features=None
                if parsed.features is None
                else parsed.features.model_dump(exclude_none=True),
            )
        except _PydanticValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise _not_a_manifest(source, f"{key}: {err['msg']}") from exc
        except ValidationError as exc:
            raise _not_a_manifest(source, exc.message) from exc


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of numbers (shapes): ``shape: [-1, 3]`` reads better."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=numbers)


_Dumper.add_representer(list, _represent_list)


def plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics as ``{str: float}``, or a ValidationError naming the one that is not a number."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool):
            raise _bad_value("metric", key, value, "a number")
        try:
            out[key] = float(value)
        except (TypeError, ValueError) as exc:
            raise _bad_value("metric", key, value, "a number") from exc
    return out


def plain_params(params: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Parameters as YAML-safe plain data (numpy scalars become numbers, tuples lists).

    Raises:
        ValidationError: naming a parameter that is not a string, number, bool, None, list
            or mapping with string keys.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise _bad_value("param", f"{path}{key!r}", key, "a string key")
        out[key] = _plain(value, f"{path}{key}")
    return out


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return plain_params(value, f"{path}.")
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), path)
    raise _bad_value("param", path, value, "a string, number, bool, None, list or mapping")


def _bad_value(kind: str, key: Any, value: Any, expected: str) -> ValidationError:
    return ValidationError(
        f"{kind} {key!s} is {value!r} ({type(value).__name__}), not {expected}",
        hint=f"give each {kind} a plain value; it is written into the bundle manifest",
    )


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _not_a_manifest(source: str, problem: str) -> ValidationError:
    return ValidationError(
        f"{source} is not a valid bundle manifest: {problem}",
        hint="pass the digest of a bundle (`conveyor model list` shows them)",
    )


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _FileDoc(_Doc):
    digest: str
    size: int = Field(ge=0)


class _ColumnDoc(_Doc):
    name: str
    datatype: str
    shape: list[int] = Field(default_factory=lambda: [-1])
    nullable: bool = False


class _SignatureDoc(_Doc):
    inputs: list[_ColumnDoc]
    outputs: list[_ColumnDoc] = Field(default_factory=list)


class _EnvDoc(_Doc):
    python: str
    platform: str
    requirements: dict[str, str]


class _SkopsDoc(_Doc):
    trusted: list[str] = Field(default_factory=list)


class _FeaturesDoc(_Doc):
    service: str
    version: str
    entity: str
    features: list[str]
    ttl_seconds: dict[str, float] | None = None


class _ManifestDoc(_Doc):
    bundle_format: int = Field(ge=1)
    name: str
    flavor: str
    signature: _SignatureDoc
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, str] = Field(default_factory=dict)
    features: _FeaturesDoc | None = None
    run_id: str | None = None
    created_by: str | None = None
    files: dict[str, _FileDoc]
    env: _EnvDoc
    skops: _SkopsDoc = Field(default_factory=_SkopsDoc)
