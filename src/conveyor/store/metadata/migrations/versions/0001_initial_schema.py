"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 17:01:08.703907
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conveyor.store.metadata.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_rule"), ["rule"], unique=False)

    op.create_table(
        "artifact",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_artifact")),
    )
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=80), nullable=False),
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_target"), ["target"], unique=False)

    op.create_table(
        "dataset_version",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("schema_digest", sa.String(length=80), nullable=True),
        sa.Column(
            "stats",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_version")),
    )
    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_version_name"), ["name"], unique=False)

    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("stable_version", sa.Integer(), nullable=True),
        sa.Column("candidate_version", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column(
            "weights",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column(
            "analysis",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment")),
    )
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployment_model"), ["model"], unique=False)

    op.create_table(
        "feature_definition",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=80), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("dtype", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_feature_definition")),
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    op.create_table(
        "model",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model")),
    )
    op.create_table(
        "principal",
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user", name=op.f("pk_principal")),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("pipeline_run_id", sa.String(length=32), nullable=False),
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("step", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("code_digest", sa.String(length=80), nullable=False),
        sa.Column("env_digest", sa.String(length=80), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("cache_key", sa.String(length=80), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run")),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_cache_key"), ["cache_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_run_pipeline_run_id"), ["pipeline_run_id"], unique=False
        )
        batch_op.create_index(
            "ix_run_pipeline_started_at", ["pipeline", "started_at"], unique=False
        )

    op.create_table(
        "model_version",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("artifact_digest", sa.String(length=80), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model"], ["model.name"], name=op.f("fk_model_version_model_model")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_model_version_run_id_run")),
        sa.PrimaryKeyConstraint("model", "version", name=op.f("pk_model_version")),
        sa.UniqueConstraint(
            "model", "artifact_digest", name=op.f("uq_model_version_model_artifact_digest")
        ),
    )
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_version_artifact_digest"), ["artifact_digest"], unique=False
        )

    op.create_table(
        "run_input",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_run_input_run_id_run")),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_run_input")),
    )
    with op.batch_alter_table("run_input", schema=None) as batch_op:
        batch_op.create_index("ix_run_input_kind_ref", ["kind", "ref"], unique=False)

    op.create_table(
        "run_output",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_run_output_run_id_run")),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_run_output")),
    )
    with op.batch_alter_table("run_output", schema=None) as batch_op:
        batch_op.create_index("ix_run_output_kind_ref", ["kind", "ref"], unique=False)

    op.create_table(
        "token",
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user"], ["principal.user"], name=op.f("fk_token_user_principal")),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_token")),
    )
    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_version.model", "model_version.version"],
            name=op.f("fk_approval_model_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
    )
    op.create_table(
        "evaluation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset_version", sa.String(length=80), nullable=False),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "slices",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("baseline_version", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_version.model", "model_version.version"],
            name=op.f("fk_evaluation_model_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation")),
    )
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.create_index("ix_evaluation_model_version", ["model", "version"], unique=False)

    op.create_table(
        "gate_result",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("check", sa.String(length=256), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_version.model", "model_version.version"],
            name=op.f("fk_gate_result_model_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_result")),
    )
    with op.batch_alter_table("gate_result", schema=None) as batch_op:
        batch_op.create_index("ix_gate_result_model_version", ["model", "version"], unique=False)

    op.create_table(
        "stage_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_version.model", "model_version.version"],
            name=op.f("fk_stage_history_model_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_history")),
    )
    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.create_index("ix_stage_history_model_version", ["model", "version"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_history_model_version")

    op.drop_table("stage_history")
    with op.batch_alter_table("gate_result", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_result_model_version")

    op.drop_table("gate_result")
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_model_version")

    op.drop_table("evaluation")
    op.drop_table("approval")
    op.drop_table("token")
    with op.batch_alter_table("run_output", schema=None) as batch_op:
        batch_op.drop_index("ix_run_output_kind_ref")

    op.drop_table("run_output")
    with op.batch_alter_table("run_input", schema=None) as batch_op:
        batch_op.drop_index("ix_run_input_kind_ref")

    op.drop_table("run_input")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_version_artifact_digest"))

    op.drop_table("model_version")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_pipeline_started_at")
        batch_op.drop_index(batch_op.f("ix_run_pipeline_run_id"))
        batch_op.drop_index(batch_op.f("ix_run_cache_key"))

    op.drop_table("run")
    op.drop_table("principal")
    op.drop_table("model")
    op.drop_table("incident")
    op.drop_table("feature_definition")
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_model"))

    op.drop_table("deployment")
    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_version_name"))

    op.drop_table("dataset_version")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_target"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
    op.drop_table("artifact")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_rule"))

    op.drop_table("alert")
