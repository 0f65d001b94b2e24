"""Signed checkpoints and append-only audit tables: edits, deletions, truncation, forgeries.

The attacker in these tests has the application's database role and DDL rights: they drop the
append-only triggers first, then edit, delete or cut off rows with raw SQL. Each case must be
detected and named; the triggers themselves must refuse the same statements while in place.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.cli import main
from conveyor.cli.audit import parse_since
from conveyor.core.config import load_config
from conveyor.core.errors import ConfigError, UsageError
from conveyor.project._audit import (
    AUDIT_KEY_ENV,
    CHECKPOINT_FILE,
    KEY_FILE,
    audit_key,
    checkpoint,
    checkpoint_if_behind,
    read_checkpoint_file,
    verify,
)
from conveyor.project._context import Project
from conveyor.project._workflows import audit_log
from conveyor.store.artifacts import LocalArtifactStore
from conveyor.store.metadata import schema
from conveyor.store.metadata.audit import (
    Checkpoint,
    append_checkpoint,
    key_id,
    sign_checkpoint,
    signature_valid,
    verify_trail,
)

if TYPE_CHECKING:
    from conveyor.store.metadata import ChainReport, MetadataStore

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def write_events(store: MetadataStore, n: int, actor: str = "ann") -> None:
    for i in range(n):
        with store.write(actor) as tx:
            tx.audit("model.stage_changed", f"model:churn/{i}", {"i": i})


def sign_now(store: MetadataStore, key: bytes = KEY) -> Checkpoint:
    with store.write("conveyor") as tx:
        return append_checkpoint(tx.conn, key, tx.at)


def verified(store: MetadataStore, extra: list[Checkpoint] | None = None) -> ChainReport:
    with store.read() as conn:
        return verify_trail(conn, KEY, extra or [])


def attack(store: MetadataStore, *statements: str) -> None:
    """Drop the append-only triggers, then run ``statements`` as raw SQL.

    SQLite test databases are new files each time; on PostgreSQL the schema is reused across
    tests, so the triggers are put back afterwards.
    """
    with store.engine.begin() as conn:
        for table in ("audit_event", "audit_checkpoint"):
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            else:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_update")
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        for statement in statements:
            conn.exec_driver_sql(statement)
        if conn.dialect.name == "postgresql":
            # Covering their tracks; it also keeps the reused test schema as migrated.
            for table in ("audit_event", "audit_checkpoint"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION conveyor_refuse_audit_change()"
                )


def kinds(report: ChainReport) -> list[tuple[str, int | None]]:
    return [(f.kind, f.seq) for f in report.findings]


# ------------------------------------------------------------------ append-only in the database


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET payload = '{}' WHERE seq = 2",
        "DELETE FROM audit_event WHERE seq = 3",
        "DELETE FROM audit_event",
        "UPDATE audit_checkpoint SET seq = 1",
        "DELETE FROM audit_checkpoint",
    ],
)
def test_the_database_refuses_to_change_audit_rows(
    metadata_store: MetadataStore, statement: str
) -> None:
    write_events(metadata_store, 3)
    sign_now(metadata_store)
    table = statement.split()[1] if statement.startswith("UPDATE") else statement.split()[2]
    with pytest.raises(sa.exc.DBAPIError, match=f"{table} is append-only"):
        with metadata_store.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    # Through a write transaction of the store, too.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with metadata_store.write("mallory") as tx:
            tx.conn.exec_driver_sql(statement)
    report = verified(metadata_store)
    assert (report.ok, report.events, report.findings) == (True, 3, ())


_WRITES = [
    f"{verb}{table}"
    for table in ("audit_event", "audit_checkpoint")
    for verb in ("UPDATE ", "DELETE FROM ", "sa.update(", "sa.delete(")
] + [
    f"{table}.{op}" for table in ("audit_event", "audit_checkpoint") for op in ("update", "delete")
]


def test_nothing_in_conveyor_updates_or_deletes_audit_rows() -> None:
    import conveyor

    sources = [
        p for p in Path(conveyor.__file__).parent.rglob("*.py") if "migrations" not in p.parts
    ]
    assert len(sources) > 20
    offenders = [
        (p.name, needle)
        for p in sources
        for needle in _WRITES
        if needle in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


# ------------------------------------------------------------------ signatures


def test_a_checkpoint_signature_covers_every_field() -> None:
    cp = sign_checkpoint(KEY, 57, "blake3:" + "a" * 64, AT)
    assert cp.key_id == key_id(KEY) != key_id(OTHER_KEY)
    assert cp.signature.startswith("hmac-sha256:")
    assert signature_valid(KEY, cp)
    assert not signature_valid(OTHER_KEY, cp)
    for changed in (
        Checkpoint(58, cp.head, cp.at, cp.key_id, cp.signature),
        Checkpoint(57, "blake3:" + "b" * 64, cp.at, cp.key_id, cp.signature),
        Checkpoint(57, cp.head, AT + dt.timedelta(microseconds=1), cp.key_id, cp.signature),
        Checkpoint(57, cp.head, cp.at, key_id(OTHER_KEY), cp.signature),
    ):
        assert not signature_valid(KEY, changed)


def test_an_intact_trail_reports_its_newest_checkpoint(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 3)
    first = sign_now(metadata_store)
    write_events(metadata_store, 2)
    second = sign_now(metadata_store)
    report = verified(metadata_store)
    assert (report.ok, report.events, report.unverified) == (True, 5, 0)
    assert report.checkpoint == second
    assert (first.seq, second.seq) == (3, 5)
    with metadata_store.read() as conn:
        head = conn.execute(
            sa.select(schema.audit_event.c.hash).where(schema.audit_event.c.seq == 5)
        )
        assert second.head == report.head == head.scalar()


def test_checkpoints_of_another_key_are_counted_not_trusted(
    metadata_store: MetadataStore,
) -> None:
    write_events(metadata_store, 2)
    sign_now(metadata_store, OTHER_KEY)
    report = verified(metadata_store)
    assert (report.ok, report.unverified, report.checkpoint) == (True, 1, None)
    # Without a key, nothing can be checked, but the chain itself still is.
    with metadata_store.read() as conn:
        assert verify_trail(conn, None).unverified == 1


# ------------------------------------------------------------------ the attacker


def test_an_edited_event_is_named(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 5)
    sign_now(metadata_store)
    attack(metadata_store, "UPDATE audit_event SET actor = 'mallory' WHERE seq = 2")
    report = verified(metadata_store)
    assert not report.ok
    assert kinds(report) == [("edited", 2)]
    assert report.broken_seq == 2
    assert report.reason == "its content was changed after it was written"


def test_a_deleted_event_in_the_middle_is_named(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 5)
    sign_now(metadata_store)
    attack(metadata_store, "DELETE FROM audit_event WHERE seq IN (2, 3)")
    report = verified(metadata_store)
    assert kinds(report) == [("missing", 2)]
    assert report.reason == "events 2 to 3 are missing"
    assert report.events == 3


def test_several_tamperings_are_each_named(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 8)
    sign_now(metadata_store)
    attack(
        metadata_store,
        "UPDATE audit_event SET payload = '{\"i\":99}' WHERE seq = 2",
        "DELETE FROM audit_event WHERE seq = 5",
        "UPDATE audit_event SET prev_hash = 'genesis' WHERE seq = 7",
    )
    # seq 7's content changed too (prev_hash is hashed), so it is both relinked and edited.
    assert kinds(verified(metadata_store)) == [
        ("edited", 2),
        ("missing", 5),
        ("relinked", 7),
        ("edited", 7),
    ]


def test_truncation_is_detected_against_the_checkpoint(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 5)
    cp = sign_now(metadata_store)
    attack(metadata_store, "DELETE FROM audit_event WHERE seq > 3")
    report = verified(metadata_store)
    assert not report.ok
    assert kinds(report) == [("truncated", 4)]
    assert report.reason == (
        f"the chain ends at seq 3 but the checkpoint of {cp.at.isoformat(timespec='seconds')}"
        f" says 5 events, head {cp.head}: events were cut off its end"
    )


def test_truncating_everything_is_detected(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 2)
    sign_now(metadata_store)
    attack(metadata_store, "DELETE FROM audit_event")
    report = verified(metadata_store)
    assert (report.ok, report.events, kinds(report)) == (False, 0, [("truncated", 1)])


def test_truncation_with_checkpoint_rows_deleted_is_caught_by_the_mirror(
    metadata_store: MetadataStore,
) -> None:
    write_events(metadata_store, 5)
    mirrored = sign_now(metadata_store)
    attack(metadata_store, "DELETE FROM audit_event WHERE seq > 2", "DELETE FROM audit_checkpoint")
    # The database alone now holds a valid, shorter chain and no checkpoint...
    assert verified(metadata_store).ok
    # ...but the copy kept outside it still says 5.
    report = verified(metadata_store, [mirrored])
    assert kinds(report) == [("truncated", 3)]


def test_a_chain_cut_and_grown_again_diverges_from_the_checkpoint(
    metadata_store: MetadataStore,
) -> None:
    write_events(metadata_store, 4)
    sign_now(metadata_store)
    attack(metadata_store, "DELETE FROM audit_event WHERE seq > 1")
    write_events(metadata_store, 5, actor="mallory")  # a new, self-consistent seq 2..6
    report = verified(metadata_store)
    assert report.events == 6
    assert kinds(report) == [("diverged", 4)]
    assert "event 4 is not the one the checkpoint of" in str(report.reason)


def test_a_forged_checkpoint_is_named(metadata_store: MetadataStore) -> None:
    write_events(metadata_store, 3)
    real = sign_now(metadata_store)
    with metadata_store.write("mallory") as tx:
        tx.conn.execute(
            sa.insert(schema.audit_checkpoint).values(
                seq=3, head=real.head, at=real.at, key_id=real.key_id, signature="hmac-sha256:00"
            )
        )
    report = verified(metadata_store)
    assert kinds(report) == [("forged", 3)]
    assert "has a bad signature: it was forged or altered" in str(report.reason)
    # A checkpoint whose numbers were edited to match a truncated chain is forged as well.
    attack(
        metadata_store,
        "DELETE FROM audit_event WHERE seq = 3",
        "UPDATE audit_checkpoint SET seq = 2",
    )
    assert {k for k, _ in kinds(verified(metadata_store))} == {"forged"}


# ------------------------------------------------------------------ the project layer


@pytest.fixture
def project(
    tmp_path: Path, metadata_store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> Project:
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    (tmp_path / "conveyor.yaml").write_text("project: audited\n")
    config = load_config(tmp_path, {"store": metadata_store.url})
    return Project(config, metadata_store, LocalArtifactStore(tmp_path / "artifacts"))


def test_the_key_file_is_created_private_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    assert audit_key(tmp_path, create=False) is None
    key = audit_key(tmp_path, create=True)
    assert key is not None
    assert len(key) == 32
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert audit_key(tmp_path, create=True) == key == audit_key(tmp_path, create=False)


def test_the_environment_key_wins_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, "x" * 32)
    assert audit_key(tmp_path, create=True) == b"x" * 32
    assert not (tmp_path / KEY_FILE).exists()
    monkeypatch.setenv(AUDIT_KEY_ENV, "short")
    with pytest.raises(ConfigError, match="too short") as info:
        audit_key(tmp_path, create=True)
    assert "short" not in info.value.message.replace("too short", "")  # the key is not echoed


def test_a_damaged_key_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    (tmp_path / KEY_FILE).write_text("not hex\n")
    with pytest.raises(ConfigError, match="is not an audit key"):
        audit_key(tmp_path, create=False)


def test_checkpoints_are_mirrored_and_the_mirror_is_checked(project: Project) -> None:
    write_events(project.metadata, 4)
    cp = checkpoint(project)
    path = project.config.state_dir / CHECKPOINT_FILE
    [line] = path.read_text().splitlines()
    assert json.loads(line)["store"] == project.metadata.url
    assert read_checkpoint_file(path, project.metadata.url) == (
        [Checkpoint(cp.seq, cp.head, cp.at, cp.key_id, cp.signature, source=str(path))],
        0,
    )
    # Another store's lines are ignored; a torn line is counted, not fatal.
    with path.open("a") as fh:
        fh.write(line.replace(project.metadata.url, "sqlite:////elsewhere.db") + "\n")
        fh.write('{"store": "' + project.metadata.url + '", "seq": 9, "he')
    report = verify(project)
    assert (report.ok, report.unverified, report.checkpoint) == (True, 1, cp)

    attack(
        project.metadata, "DELETE FROM audit_event WHERE seq > 2", "DELETE FROM audit_checkpoint"
    )
    report = verify(project)
    assert kinds(report) == [("truncated", 3)]
    assert report.findings[0].message.endswith("events were cut off its end")


def test_a_checkpoint_is_written_only_when_the_chain_moved(project: Project) -> None:
    assert checkpoint_if_behind(project) is None  # nothing to sign yet
    write_events(project.metadata, 2)
    first = checkpoint_if_behind(project)
    assert first is not None
    assert first.seq == 2
    assert checkpoint_if_behind(project) is None
    write_events(project.metadata, 1)
    second = checkpoint_if_behind(project)
    assert second is not None
    assert second.seq == 3
    with project.metadata.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(schema.audit_checkpoint))
        assert count.scalar() == 2
    lines = (project.config.state_dir / CHECKPOINT_FILE).read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [2, 3]


def test_the_log_filters_by_actor_time_action_and_target(project: Project) -> None:
    write_events(project.metadata, 2, actor="ann")
    write_events(project.metadata, 3, actor="bob")
    assert [e.seq for e in audit_log(project, actor="bob")] == [3, 4, 5]
    assert [e.seq for e in audit_log(project, actor="bo")] == []
    assert [e.seq for e in audit_log(project, actor="ann", target="model:churn/1")] == [2]
    assert [e.seq for e in audit_log(project, actor="bob", limit=2)] == [4, 5]
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert audit_log(project, since=future) == []
    assert len(audit_log(project, since=parse_since("1h"), action="model.")) == 5


# ------------------------------------------------------------------ the command line


def test_since_accepts_iso_times_and_spans() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert parse_since("2h", now=now) == now - dt.timedelta(hours=2)
    assert parse_since("7d", now=now) == now - dt.timedelta(days=7)
    assert parse_since("30m", now=now) == now - dt.timedelta(minutes=30)
    assert parse_since("1w", now=now) == now - dt.timedelta(weeks=1)
    assert parse_since("2026-11-26T14:00") == dt.datetime(2026, 11, 26, 14, tzinfo=dt.UTC)
    offset = parse_since("2026-11-26T14:00+02:00")
    assert offset is not None
    assert offset.utcoffset() == dt.timedelta(hours=2)
    assert parse_since(None) is None
    for bad in ("yesterday", "2x", "-2h", "2 hours"):
        with pytest.raises(UsageError, match="is not a date or time, nor a span"):
            parse_since(bad)


@pytest.fixture
def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CONVEYOR_STORE", "CONVEYOR_ARTIFACTS", "CONVEYOR_CONFIG", AUDIT_KEY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVEYOR_PROJECT_DIR", str(tmp_path))
    (tmp_path / "conveyor.yaml").write_text("project: audited\n")
    return tmp_path


def test_cli_verify_checkpoint_and_log(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.store.metadata import MetadataStore

    store = MetadataStore.open(f"sqlite:///{cli_project / '.conveyor' / 'metadata.db'}")
    try:
        write_events(store, 3, actor="ann")
        write_events(store, 1, actor="bob")
    finally:
        store.close()
    assert main(["audit", "verify"]) == 0
    assert "intact: 4 events, no checkpoint yet" in capsys.readouterr().out
    assert main(["audit", "checkpoint"]) == 0
    assert "checkpoint: 4 events" in capsys.readouterr().out
    assert main(["audit", "verify"]) == 0
    assert "audit trail intact: 4 events, last checkpoint at " in capsys.readouterr().out

    assert main(["audit", "log", "--actor", "bob", "--since", "1h", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert (event["seq"], event["actor"], event["payload"]) == (4, "bob", {"i": 0})

    store = MetadataStore.open(f"sqlite:///{cli_project / '.conveyor' / 'metadata.db'}")
    try:
        attack(
            store,
            "UPDATE audit_event SET actor = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_event WHERE seq > 2",
        )
    finally:
        store.close()
    assert main(["audit", "verify"]) == 1
    captured = capsys.readouterr()
    assert "audit trail broken at event 1: its content was changed" in captured.err
    assert "(and 1 more, above)" in captured.err
    assert "truncated: the chain ends at seq 2 but the checkpoint of" in captured.out
