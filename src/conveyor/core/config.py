"""Project configuration: ``conveyor.yaml``, ``CONVEYOR_*`` variables and command-line flags.

Precedence is flag > environment variable > ``conveyor.yaml`` > default. The file is validated
against one schema when it is loaded; an error names the bad key and its line::

    conveyor.yaml:7: model.step: Field required; add `step:` under `model`
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as _PydanticValidationError

from conveyor.core import env
from conveyor.core.errors import ConfigError
from conveyor.core.project_dir import CONFIG_FILE, DEFAULT_STATE_DIR, config_path, find_project_dir

__all__ = [
    "CONFIG_FILE",
    "Config",
    "ModelSection",
    "ServeSection",
    "find_project_dir",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Which pipeline outputs make up the model that ``conveyor run`` registers."""

    name: str = Field(description="registered model name")
    step: str = Field(description="the step whose output is the conveyor.Model to register")
    metrics: str | None = Field(default=None, description="the step returning a metrics dict")
    description: str = ""


class ServeAuthSection(_Section):
    """Who may call the inference routes: anyone (``open``, behind a gateway) or bearer
    tokens with the ``predict`` permission (``token``). The management API always needs one."""

    inference: Literal["open", "token"] = "open"


class ServeSection(_Section):
    """Where ``conveyor serve`` listens and how often it looks for a new production version."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    poll_interval: float = Field(default=1.0, gt=0, le=3600)
    models: list[str] | None = None
    auth: ServeAuthSection = Field(default_factory=ServeAuthSection)
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host names answered; default: the loopback names on a loopback address, "
        "any elsewhere",
    )


class OpenLineageSection(_Section):
    """Where a pipeline run's OpenLineage events go (with ``conveyor[openlineage]``)."""

    enabled: bool = True
    namespace: str | None = Field(
        default=None, description="the job namespace; default conveyor://<project>"
    )
    transport: dict[str, Any] | None = Field(
        default=None,
        description="an openlineage-python transport config, e.g. {type: http, url: ...}; "
        "default: a file, .conveyor/openlineage/events.jsonl",
    )


class LineageSection(_Section):
    openlineage: OpenLineageSection = Field(default_factory=OpenLineageSection)


class FeaturesSection(_Section):
    """Where the feature store keeps its values (``conveyor features ...``, the server's lookup)."""

    online: str = Field(
        default="sqlite",
        description='"sqlite" (a file under .conveyor/), "sqlite:///PATH" or '
        '"redis://HOST:PORT/DB[#KEYPREFIX]" (with conveyor[redis])',
    )
    offline: str = Field(
        default=".conveyor/features/offline",
        description="the folder of materialised values (Parquet), relative to the project",
    )


class InferenceLogSection(_Section):
    """What ``conveyor serve`` logs of each answered request for monitoring (Parquet files).

    Off by default, because it keeps the inputs users send (which may be personal data) on the
    server's disk: turn it on where that is allowed, with the ``retention_days`` your policy
    says (30 by default). ``conveyor init`` projects turn it on. Logging every request
    costs a real server at 16 concurrent clients no throughput or p99 beyond the run-to-run
    noise (bench row 5j); ``sample_rate`` bounds the disk it takes.
    """

    enabled: bool = False
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, description="share of requests")
    queue_size: int = Field(default=10_000, ge=1, description="records waiting at most")
    batch_size: int = Field(default=1_000, ge=1)
    dir: str = Field(default=".conveyor/inference-log", description="relative to the project")
    retention_days: float | None = Field(
        default=30.0, gt=0, description="days of log kept; null keeps every day"
    )


class MonitoringSection(_Section):
    """``conveyor monitor``: the alert rules, and the inference log the server writes."""

    rules: str | None = Field(
        default=None, description="the rules file; default monitoring.yaml or alerts.yaml"
    )
    window_s: float = Field(default=300.0, gt=0)
    interval_s: float = Field(default=60.0, gt=0)
    slices: list[str] = Field(
        default_factory=list, description="columns whose groups get their own label metrics"
    )
    score_column: str | None = Field(default=None, description="the output to calibrate")
    reference_sample: int = Field(
        default=10_000, ge=1, description="training rows predicted for the reference"
    )
    log: InferenceLogSection = Field(default_factory=InferenceLogSection)


class Config(_Section):
    """A validated project configuration with every path made absolute."""

    root: Path
    project: str
    store: str
    artifacts: str
    pipeline: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    model: ModelSection | None = None
    policies: Path | None = None
    serve: ServeSection = Field(default_factory=ServeSection)
    lineage: LineageSection = Field(default_factory=LineageSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)

    @property
    def state_dir(self) -> Path:
        return self.root / DEFAULT_STATE_DIR


class _FileSchema(_Section):
    """The schema of ``conveyor.yaml`` itself (paths still relative)."""

    project: str | None = None
    store: str | None = None
    artifacts: str | None = None
    pipeline: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    model: ModelSection | None = None
    policies: str | None = None
    serve: ServeSection = Field(default_factory=ServeSection)
    lineage: LineageSection = Field(default_factory=LineageSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its nearest existing parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _read_file(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.name} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8"
        ) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from exc
    if data is None:
        return {}, node
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path.name}: must be a mapping of keys to values, not a {type(data).__name__}"
        )
    return data, node


def _resolve_store(value: str, root: Path) -> str:
    if "://" in value:
        if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            # A relative SQLite path is relative to the project, not to the shell's folder.
            return f"sqlite:///{(root / value.removeprefix('sqlite:///')).resolve()}"
        return value
    return f"sqlite:///{(root / value).resolve()}"


def _resolve_location(value: str, root: Path) -> str:
    if "://" in value and not value.startswith("file://"):
        return value
    return str((root / value.removeprefix("file://")).resolve())


def load_config(project_dir: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate the project configuration.

    Args:
        project_dir: Folder of ``conveyor.yaml``; found from the current folder upward if omitted.
        overrides: Values from command-line flags (``store``, ``artifacts``, ``port`` ...);
            ``None`` values are ignored.

    Raises:
        ConfigError: naming the file, line and key that are wrong, and what to write instead.
    """
    root, path = config_path(project_dir)
    data, node = _read_file(path) if path.is_file() else ({}, None)
    try:
        parsed = _FileSchema.model_validate(data)
    except _PydanticValidationError as exc:
        raise _schema_error(exc, path, node) from exc

    values: dict[str, Any] = parsed.model_dump()
    values["serve"] = dict(values["serve"])
    values["features"] = dict(values["features"])
    _apply_environment(values)
    for key, value in (overrides or {}).items():
        if value is not None:
            (values["serve"] if key in ServeSection.model_fields else values)[key] = value

    state = root / DEFAULT_STATE_DIR
    values["store"] = _resolve_store(values["store"] or str(state / "metadata.db"), root)
    values["artifacts"] = _resolve_location(values["artifacts"] or str(state / "artifacts"), root)
    policies = values["policies"] or (
        "policies.yaml" if (root / "policies.yaml").is_file() else None
    )
    values["policies"] = root / policies if policies else None
    values["project"] = values["project"] or root.name
    try:
        return Config(root=root, **values)
    except _PydanticValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid setting {key}: {err['msg']}") from exc


def _schema_error(exc: _PydanticValidationError, path: Path, node: yaml.Node | None) -> ConfigError:
    # A misspelt key also makes the intended key "missing": report the misspelling first.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(err["loc"])
    line = _line_of(node, loc)
    where = f"{path.name}:{line}" if line else path.name
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg, hint = err["msg"], None
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        known = _known_keys(loc[:-1])
        hint = f"known keys here: {', '.join(known)}" if known else None
    elif err["type"] == "missing":
        parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
        hint = f"add `{loc[-1]}:` under `{parent}`"
    return ConfigError(f"{where}: {key}: {msg}", hint=hint)


def _apply_environment(values: dict[str, Any]) -> None:
    for key, var in (("store", env.CONVEYOR_STORE), ("artifacts", env.CONVEYOR_ARTIFACTS)):
        if os.environ.get(var):
            values[key] = os.environ[var]
    for key, var in (
        ("online", env.CONVEYOR_FEATURES_ONLINE),
        ("offline", env.CONVEYOR_FEATURES_OFFLINE),
    ):
        if os.environ.get(var):
            values["features"][key] = os.environ[var]
    if os.environ.get(env.CONVEYOR_HOST):
        values["serve"]["host"] = os.environ[env.CONVEYOR_HOST]
    numbers: tuple[tuple[str, str, type[int] | type[float]], ...] = (
        ("port", env.CONVEYOR_PORT, int),
        ("poll_interval", env.CONVEYOR_POLL_INTERVAL, float),
    )
    for key, var, cast in numbers:
        raw = os.environ.get(var)
        if raw:
            try:
                values["serve"][key] = cast(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"{var}={raw!r} is not a number", hint=f"set {var} to a number"
                ) from exc


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = _FileSchema
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [
            a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)
        ]
        sub = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if sub is None:
            return []
        model = sub
    return sorted(model.model_fields)
