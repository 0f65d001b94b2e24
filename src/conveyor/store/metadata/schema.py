"""The tables of the metadata store (DESIGN.md, "The data model").

SQLAlchemy Core, not the ORM: services read and write rows as plain tuples and dicts, which
keeps listing thousands of runs cheap (building ORM objects is where other trackers spend time).
The Alembic migrations under ``migrations/`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "UTCDateTime",
    "alert",
    "approval",
    "artifact",
    "audit_checkpoint",
    "audit_event",
    "dataset_check",
    "dataset_version",
    "deployment",
    "evaluation",
    "feature_definition",
    "feature_service",
    "gate_result",
    "incident",
    "lineage_edge",
    "metadata",
    "metric",
    "model",
    "model_version",
    "monitoring_window",
    "pipeline_run",
    "principal",
    "routing",
    "run",
    "run_input",
    "run_output",
    "serving_window",
    "stage_history",
    "token",
]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the metadata store; use core.clock.utcnow()")
        value = value.astimezone(dt.UTC)
        # SQLite stores text; keep it naive-UTC there so ordering by text is ordering by time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def result_processor(
        self, dialect: sa.Dialect, coltype: Any
    ) -> Callable[[Any], dt.datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite hands back the text written above (naive UTC). Parsing it with the offset
        # appended gives an aware datetime in one C call (~0.4 us), where SQLAlchemy's parse
        # followed by process_result_value took ~1.5 us; listing 1,000 runs reads 2,000.
        return _utc_from_text


def _utc_from_text(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return _FROM_ISO(value + "+00:00")
    except ValueError:
        # Text with an offset of its own (written by another program): honour it.
        return _FROM_ISO(value).astimezone(dt.UTC)


_FROM_ISO = dt.datetime.fromisoformat


JSON = sa.JSON().with_variant(JSONB(), "postgresql")
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _at(name: str = "created_at") -> sa.Column[dt.datetime]:
    return sa.Column(name, UTCDateTime(), nullable=False)


artifact = sa.Table(
    "artifact",
    metadata,
    sa.Column("digest", sa.String(80), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    _at(),
)

dataset_version = sa.Table(
    "dataset_version",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("schema_digest", sa.String(80)),
    sa.Column("stats", JSON),
    sa.Column("source_uri", sa.Text, nullable=False),
    _at(),
)

feature_definition = sa.Table(
    "feature_definition",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(80), primary_key=True),
    sa.Column("entity", sa.String(128), nullable=False),
    sa.Column("dtype", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(128)),
    _at(),
    # 0008: what the definition computes, for humans and for rebuilding it.
    sa.Column("description", sa.Text),
    sa.Column("source", sa.String(256)),
    sa.Column("spec", JSON),
)

# The features one model uses, each at an exact version; versioned by the digest of that list.
feature_service = sa.Table(
    "feature_service",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(80), primary_key=True),
    sa.Column("features", JSON, nullable=False),
    sa.Column("owner", sa.String(128)),
    sa.Column("description", sa.Text),
    _at(),
)

run = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline_run_id", sa.String(32), nullable=False, index=True),
    sa.Column("pipeline", sa.String(128), nullable=False),
    sa.Column("step", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", JSON, nullable=False),
    sa.Column("code_digest", sa.String(80), nullable=False),
    sa.Column("env_digest", sa.String(80), nullable=False),
    sa.Column("seed", sa.BigInteger),
    sa.Column("cache_key", sa.String(80), nullable=False, index=True),
    sa.Column("cache_hit", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime()),
    # The latest value of each metric logged to the run (conveyor.tracking), kept with the run
    # so that listing runs reads one row each however long their metric histories are; the
    # history itself is in ``metric``. NULL for runs that logged none. Added by 0002, hence last.
    sa.Column("metrics", JSON),
    sa.Index("ix_run_pipeline_started_at", "pipeline", "started_at"),
    sa.Index("ix_run_started_at", "started_at"),
)


# One row per pipeline run (its step runs share ``run.pipeline_run_id``): what a rebuild needs
# beyond the steps' own rows. Added by 0006.
pipeline_run = sa.Table(
    "pipeline_run",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", JSON, nullable=False),
    sa.Column("seed", sa.BigInteger),
    # The source tree: git commit and whether the working tree had uncommitted changes (None
    # outside a git repository), and an artifact holding a snapshot of the project's code.
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("code_snapshot", sa.String(80)),
    # The artifact holding the environment document (Python, platform, distributions).
    sa.Column("environment", sa.String(80)),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime()),
    sa.Index("ix_pipeline_run_pipeline_started_at", "pipeline", "started_at"),
)


def _edge(name: str) -> sa.Table:
    # kind: "artifact" | "dataset" | "feature" | "file" | "model_version"; ref: its identifier.
    return sa.Table(
        name,
        metadata,
        sa.Column("run_id", sa.String(32), sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(512), nullable=False),
        sa.Index(f"ix_{name}_kind_ref", "kind", "ref"),
    )


run_input = _edge("run_input")
run_output = _edge("run_output")

# One row per value logged with ``RunHandle.log_metric``; written in batches (conveyor.tracking).
metric = sa.Table(
    "metric",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("run.id"), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_metric_run_id_key_step", "run_id", "key", "step"),
)

model = sa.Table(
    "model",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", sa.String(128), nullable=False),
    _at(),
)

model_version = sa.Table(
    "model_version",
    metadata,
    sa.Column("model", sa.String(128), sa.ForeignKey("model.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("artifact_digest", sa.String(80), nullable=False, index=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("run.id")),
    sa.Column("metrics", JSON, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    _at(),
    sa.UniqueConstraint("model", "artifact_digest"),
)

evaluation = sa.Table(
    "evaluation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("dataset_version", sa.String(80), nullable=False),
    sa.Column("metrics", JSON, nullable=False),
    sa.Column("slices", JSON),
    sa.Column("baseline_version", sa.Integer),
    _at(),
    # Added by 0003, hence after created_at: the digest of the evaluation settings, the artifact
    # of per-row predictions (for paired comparisons on the same dataset version), the report.
    sa.Column("config_digest", sa.String(80)),
    sa.Column("predictions_digest", sa.String(80)),
    sa.Column("report", JSON),
    sa.ForeignKeyConstraint(["model", "version"], ["model_version.model", "model_version.version"]),
    sa.Index("ix_evaluation_model_version", "model", "version"),
    sa.Index("ix_evaluation_model_version_dataset_version", "model", "version", "dataset_version"),
)

gate_result = sa.Table(
    "gate_result",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("check", sa.String(256), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("observed", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("details", JSON),
    _at(),
    # Added by 0003: the policy file's digest and the dataset version the number was measured on.
    sa.Column("policy_digest", sa.String(80)),
    sa.Column("dataset_version", sa.String(80)),
    sa.ForeignKeyConstraint(["model", "version"], ["model_version.model", "model_version.version"]),
    sa.Index("ix_gate_result_model_version", "model", "version"),
)

approval = sa.Table(
    "approval",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("user", sa.String(128), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text),
    _at(),
    sa.Column("role", sa.String(32)),  # the reviewer's role at the time; added by 0003
    sa.ForeignKeyConstraint(["model", "version"], ["model_version.model", "model_version.version"]),
    sa.Index("ix_approval_model_version_stage", "model", "version", "stage"),
)

# One row per finding of a data check (conveyor.data) on a dataset version. Added by 0003.
dataset_check = sa.Table(
    "dataset_check",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_version", sa.String(80), nullable=False, index=True),
    sa.Column("reference_version", sa.String(80)),
    sa.Column("check", sa.String(128), nullable=False),
    sa.Column("column", sa.String(256)),
    sa.Column("blocking", sa.Boolean, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("observed", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("details", JSON),
    _at(),
)

stage_history = sa.Table(
    "stage_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["model", "version"], ["model_version.model", "model_version.version"]),
    sa.Index("ix_stage_history_model_version", "model", "version"),
)

deployment = sa.Table(
    "deployment",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("stable_version", sa.Integer),
    sa.Column("candidate_version", sa.Integer),
    sa.Column("mode", sa.String(16), nullable=False),
    # The plan: {"steps": [5, 25, 50, 100]} or {"steps": ["shadow", 100], "shadow_sample": 1.0}.
    sa.Column("weights", JSON, nullable=False),
    sa.Column("phase", sa.String(32), nullable=False),
    # The analyses of the current step, newest last (bounded).
    sa.Column("analysis", JSON),
    _at(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step_started_at", UTCDateTime()),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    # Bumped on every change: writers compare-and-set on it, so two controllers never both act.
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("settings", JSON),
    sa.Column("actor", sa.String(128)),
    sa.Column("reason", sa.Text),
    sa.Column("ended_at", UTCDateTime()),
)

# The lineage graph: one row per edge "src was used to make dst" (src -> dst), nodes named as
# ``kind:ref`` by conveyor.store.metadata.lineage. Written in the same transaction as the facts
# (run inputs and outputs, registrations, evaluations); queried with recursive SQL both ways.
lineage_edge = sa.Table(
    "lineage_edge",
    metadata,
    sa.Column("src", sa.String(600), primary_key=True),
    sa.Column("dst", sa.String(600), primary_key=True),
    sa.Column("relation", sa.String(32), primary_key=True),
    _at(),
    sa.Index("ix_lineage_edge_dst_src", "dst", "src"),
)

routing = sa.Table(
    "routing",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("canary_version", sa.Integer),
    sa.Column("canary_weight", sa.Float, nullable=False),
    sa.Column("shadow_version", sa.Integer),
    sa.Column("shadow_sample", sa.Float, nullable=False),
    sa.Column("deployment_id", sa.Integer),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

serving_window = sa.Table(
    "serving_window",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("replica", sa.String(64), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=False),
    sa.Column("summary", JSON, nullable=False),
    sa.Index("ix_serving_window_model_ended_at", "model", "ended_at"),
)

alert = sa.Table(
    "alert",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(128), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("labels", JSON),
    # 0008: one row per (rule, model); state moves inactive -> pending -> firing -> resolved.
    sa.Column("model", sa.String(128)),
    sa.Column("evidence", JSON),
    sa.Column("fired_at", UTCDateTime()),
    sa.Column("resolved_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
    sa.Column("incident_id", sa.String(32)),
    # 0009: the end of the newest window the rule read; a rule moves only on a newer one.
    sa.Column("window_end", UTCDateTime()),
    sa.Index("ix_alert_model_rule", "model", "rule"),
)

incident = sa.Table(
    "incident",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("evidence", JSON),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime()),
    # 0008: who handled it, and the rule and runbook behind it.
    sa.Column("rule", sa.String(128)),
    sa.Column("runbook", sa.Text),
    sa.Column("acked_at", UTCDateTime()),
    sa.Column("acked_by", sa.String(128)),
    sa.Column("resolved_by", sa.String(128)),
)

# Monitoring metrics of one model (and version) over one window of live traffic.
monitoring_window = sa.Table(
    "monitoring_window",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("start", UTCDateTime(), nullable=False),
    sa.Column("end", UTCDateTime(), nullable=False),
    sa.Column("metrics", JSON, nullable=False),
    sa.Index("ix_monitoring_window_model_start", "model", "start"),
)

audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(512), nullable=False, index=True),
    # Canonical JSON text, kept byte for byte: the hash covers exactly these characters.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(80), nullable=False),
    sa.Column("hash", sa.String(80), nullable=False),
)

# Signed (length, head) statements about audit_event, see store.metadata.audit. Append-only like
# the events (triggers of migration 0007), and mirrored outside the database by the project.
audit_checkpoint = sa.Table(
    "audit_checkpoint",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("head", sa.String(80), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
)

principal = sa.Table(
    "principal",
    metadata,
    sa.Column("user", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    _at(),
)

token = sa.Table(
    "token",
    metadata,
    sa.Column("hash", sa.String(80), primary_key=True),
    sa.Column("user", sa.String(128), sa.ForeignKey("principal.user"), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    _at(),
)
