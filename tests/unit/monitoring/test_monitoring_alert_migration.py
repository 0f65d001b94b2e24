"""Migration 0009: the newest window an alert rule read moves from ``alert.labels`` to its own
column, ``window_end``, and back on downgrade; a rule then skips a window it has read."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from conveyor.store.metadata import MetadataStore, schema, upgrade
from conveyor.store.metadata.migrations_runner import _MIGRATIONS

READ_END = dt.datetime(2026, 3, 2, 10, 5, tzinfo=dt.UTC)


def _downgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _rows(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        table = sa.Table("alert", sa.MetaData(), autoload_with=conn)
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def test_window_end_moves_to_its_column_and_back(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        upgrade(engine, "0008")
        a = schema.alert
        old = {"since": READ_END, "state": "pending", "model": "churn", "value": 0.4}
        with engine.begin() as conn:
            conn.execute(
                sa.insert(a).values(
                    rule="drift", labels={"window_id": 7, "window_end": READ_END.isoformat()}, **old
                )
            )
            conn.execute(sa.insert(a).values(rule="never-read", labels=None, **old))
        upgrade(engine)
        moved, untouched = _rows(engine)
        assert moved["window_end"] is not None
        assert sa.inspect(engine).get_columns("alert")[-1]["name"] == "window_end"
        assert moved["labels"] is None
        assert (untouched["window_end"], untouched["labels"]) == (None, None)
        store = MetadataStore.open(store_url)
        try:
            with store.read() as conn:
                (at,) = conn.execute(sa.select(a.c.window_end).where(a.c.rule == "drift")).one()
            assert at == READ_END
        finally:
            store.close()
        _downgrade(engine, "0008")
        back, _ = _rows(engine)
        assert "window_end" not in back
        labels = back["labels"]
        assert isinstance(labels, dict)
        assert dt.datetime.fromisoformat(str(labels["window_end"])) == READ_END
    finally:
        engine.dispose()
