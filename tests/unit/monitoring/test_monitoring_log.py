"""The inference logger: rows round-trip through Parquet, sampling, and log() never blocks."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from tests.unit.monitoring._monitoring_support import StalledLog

from conveyor.core.errors import ConfigError
from conveyor.monitoring import InferenceLogger, read_log
from conveyor.monitoring._log import read_labels, window_start

if TYPE_CHECKING:
    from pathlib import Path


T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def test_rows_are_written_by_window_and_read_back(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], window=dt.timedelta(minutes=5))
    log.log("churn", 3, "a", {"age": 30, "plan": "pro"}, 1, 0.01)
    now[0] = T0 + dt.timedelta(minutes=6)
    frame = pd.DataFrame({"age": [41, 52], "plan": ["basic", None]})
    log.log("churn", 3, "b", frame, [0, 1], 0.02)
    log.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert [f.split("-")[0] for f in files] == [
        "churn/2026",  # <model>/<yyyy-mm-dd>/<window-start>-<uuid>.parquet
        "churn/2026",
    ]
    assert [f.split("/")[2][:16] for f in files] == ["20260302T100000Z", "20260302T100500Z"]
    first = read_log(tmp_path, "churn", T0, T0 + dt.timedelta(minutes=5))
    assert first[["request_id", "age", "plan", "prediction", "version"]].to_dict("records") == [
        {"request_id": "a", "age": 30, "plan": "pro", "prediction": 1, "version": 3}
    ]
    second = read_log(tmp_path, "churn", T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(hours=1))
    assert list(second["request_id"]) == ["b:0", "b:1"]
    assert list(second["age"]) == [41, 52]
    assert second["plan"].isna().tolist() == [False, True]
    assert log.counters.written == 2


def test_labels_from_feedback_are_read_back_by_request_row(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], sample_rate=0.0)
    assert log.log_labels("churn", "a", 1)  # labels are never sampled out
    now[0] = T0 + dt.timedelta(minutes=1)
    log.log_labels("churn", "b", [0, 1])
    log.log_labels("churn", "a", 0)  # a correction: the latest label wins
    log.close()
    labels = read_labels(tmp_path, "churn", T0, T0 + dt.timedelta(hours=1))
    assert sorted(zip(labels["request_id"], labels["label"], strict=True)) == [
        ("a", 0),
        ("b:0", 0),
        ("b:1", 1),
    ]
    # Label files live apart from request files: the request reader sees none of them.
    assert len(read_log(tmp_path, "churn", T0, T0 + dt.timedelta(hours=1))) == 0


def test_sampling_logs_the_configured_share(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, sample_rate=0.25, seed=1)
    for i in range(4000):
        log.log("m", 1, str(i), {"x": i}, 0, 0.0)
    counters = log.close()
    assert counters.logged + counters.sampled_out == 4000
    assert 900 < counters.logged < 1100
    assert counters.dropped == 0


def test_window_start_aligns_to_the_epoch() -> None:
    at = dt.datetime(2026, 3, 2, 10, 7, 59, tzinfo=dt.UTC)
    assert window_start(at, dt.timedelta(minutes=5)) == dt.datetime(
        2026, 3, 2, 10, 5, tzinfo=dt.UTC
    )


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample rate"):
        InferenceLogger(tmp_path, sample_rate=1.5)
    with pytest.raises(ConfigError, match="window"):
        InferenceLogger(tmp_path, window=dt.timedelta(hours=2))


def test_log_never_blocks_when_the_writer_is_stalled(tmp_path: Path) -> None:
    log = StalledLog(tmp_path, queue_size=100, batch_size=1)
    assert log.log("m", 1, "first", {"x": 1}, 0, 0.0)
    assert log.flush(timeout=0) is False  # asks the writer to write "first" now
    assert log.entered.wait(10)  # the writer now holds "first" and hangs
    # Had log() waited on the writer, this loop would hang here: the writer never returns
    # until released below.
    for i in range(1100):
        log.log("m", 1, str(i), {"x": i}, 0, 0.0)
    log.log_labels("m", "late", 1)
    counters = log.counters
    assert counters.logged == 101  # "first" and a full buffer
    assert counters.dropped == 1001
    assert counters.written == 0
    log.release.set()
    assert log.close().written == 101
    assert len(read_log(tmp_path, "m", T0 - dt.timedelta(days=1), dt.datetime.now(dt.UTC))) == 101


def test_server_columns_round_trip_with_their_types_and_nulls(tmp_path: Path) -> None:
    """``log_columns`` (how the server logs) writes numbers, text, nulls and times as given."""
    log = InferenceLogger(tmp_path, clock=lambda: T0)
    columns = {
        "income": np.array([1.5, np.nan, 3.0]),
        "age": np.array([30, 41, 52]),
        "active": np.array([True, False, True]),
        "plan": np.array(["pro", None, "basic"], dtype=object),
        "visits": pd.array([1, None, 3], dtype="Int64"),
        "seen": np.array(["2026-01-01T00:00", "NaT", "2026-01-03T12:00"], dtype="datetime64[us]"),
    }
    assert log.log_columns("churn", 2, "r", columns, 3, np.array([0.25, 0.5, 0.75]), 0.01)
    assert log.log_columns("churn", 2, "s", {k: v[:1] for k, v in columns.items()}, 1, [1.0], 0.02)
    assert log.close().written == 2
    frame = read_log(tmp_path, "churn", T0, T0 + dt.timedelta(minutes=1))
    assert list(frame["request_id"]) == ["r:0", "r:1", "r:2", "s"]
    assert list(frame["prediction"]) == [0.25, 0.5, 0.75, 1.0]
    assert list(frame["latency_s"]) == [0.01, 0.01, 0.01, 0.02]
    assert set(frame["version"]) == {2}
    assert frame["income"].isna().tolist() == [False, True, False, False]
    assert frame["income"].dropna().tolist() == [1.5, 3.0, 1.5]
    assert frame["age"].tolist() == [30, 41, 52, 30]
    assert frame["active"].tolist() == [True, False, True, True]
    assert frame["plan"].isna().tolist() == [False, True, False, False]
    assert frame["plan"].dropna().tolist() == ["pro", "basic", "pro"]
    assert frame["visits"].isna().tolist() == [False, True, False, False]
    assert frame["seen"].isna().tolist() == [False, True, False, False]
    assert pd.Timestamp(frame["seen"].iloc[2]) == pd.Timestamp("2026-01-03T12:00")
    assert (pd.to_datetime(frame["at"], utc=True) == T0).all()


def test_a_malformed_request_is_counted_and_the_rest_of_its_batch_is_written(
    tmp_path: Path,
) -> None:
    log = InferenceLogger(tmp_path, clock=lambda: T0)
    log.log_columns("m", 1, "a", {"x": np.array([1.0]), "y": np.array([2.0])}, 1, [0], 0.0)
    # A column of 2 values in a request of 3 rows: left out, counted.
    log.log_columns("m", 1, "ragged", {"x": np.array([1.0, 2.0]), "y": np.zeros(3)}, 3, [0] * 3, 0)
    log.log("m", 1, "short", {"x": 1.0}, [0, 1], 0.0)  # two outputs for one row
    log.log_columns("m", 1, "b", {"x": np.array([3.0]), "z": np.array(["new"], object)}, 1, [1], 0)
    counters = log.close()
    assert (counters.written, counters.write_errors) == (2, 2)
    frame = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=1))
    assert list(frame["request_id"]) == ["a", "b"]
    assert frame["x"].tolist() == [1.0, 3.0]
    # A feature a request lacks is null on its row.
    assert frame["y"].isna().tolist() == [False, True]
    assert frame["z"].isna().tolist() == [True, False]
    assert frame["z"].iloc[1] == "new"


def test_odd_values_are_written_as_text(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, clock=lambda: T0)
    log.log("m", 1, "a", {"x": 1, "tags": ["b", "a"]}, np.array([[0.1, 0.9]]), 0.0)
    log.log("m", 1, "b", {"x": "one", "tags": {"k": 1}}, np.array([[0.8, 0.2]]), 0.0)
    assert log.close().written == 2
    frame = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=1))
    assert frame["x"].tolist() == ["1", "one"]  # a number here, a word there: kept as text
    assert frame["tags"].tolist() == ['["b", "a"]', '{"k": 1}']
    assert [json.loads(p) for p in frame["prediction"]] == [[0.1, 0.9], [0.8, 0.2]]


def test_day_folders_past_the_retention_are_deleted(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], retention=dt.timedelta(days=2))
    log.log("churn", 1, "old", {"x": 1.0}, 0, 0.0)
    log.log_labels("churn", "old", 1)
    assert log.flush()
    (tmp_path / "churn" / "notes").mkdir()  # not a day: left alone
    now[0] = T0 + dt.timedelta(days=2)  # T0's day ended less than 2 days ago: kept
    log.log("churn", 1, "mid", {"x": 2.0}, 0, 0.0)
    assert log.flush()
    assert (tmp_path / "churn" / "2026-03-02").is_dir()
    now[0] = T0 + dt.timedelta(days=3, hours=2)  # an hour after the last check, a day later
    log.log("churn", 1, "new", {"x": 3.0}, 0, 0.0)
    log.close()
    days = sorted(p.name for p in (tmp_path / "churn").iterdir())
    assert days == ["2026-03-04", "2026-03-05", "labels", "notes"]
    assert list((tmp_path / "churn" / "labels").iterdir()) == []
    frame = read_log(tmp_path, "churn", T0, now[0] + dt.timedelta(hours=1))
    assert list(frame["request_id"]) == ["mid", "new"]


def test_retention_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retention"):
        InferenceLogger(tmp_path, retention=dt.timedelta(0))


def test_a_window_whose_files_disagree_on_a_type_stays_readable(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, clock=lambda: T0)
    log.log("m", 1, "a", {"x": 1, "y": "s"}, 0, 0.0)
    assert log.flush()  # one file each: int and text here...
    log.log("m", 1, "b", {"x": 1.5, "y": 2}, 0.5, 0.0)
    assert log.flush()  # ...float and int there
    log.log("m", 1, "c", {"z": True}, 1, 0.0)
    assert log.flush()
    assert len(list(tmp_path.rglob("*.parquet"))) == 3
    apart = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=1)).set_index("request_id")
    log.close()  # merges the window's three files into one
    assert len(list(tmp_path.rglob("*.parquet"))) == 1
    merged = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=1)).set_index("request_id")
    for frame in (apart, merged):
        # Integers meet floats as floats; a number in one file and text in another: text.
        assert frame["prediction"].to_dict() == {"a": 0.0, "b": 0.5, "c": 1.0}
        assert frame.loc[["a", "b"], "x"].tolist() == [1.0, 1.5]
        assert frame.loc[["a", "b"], "y"].tolist() == ["s", "2"]
        assert frame.loc[["a", "b", "c"], "x"].isna().tolist() == [False, False, True]


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.parquet"))


def test_a_closed_window_is_merged_into_one_file(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], window=dt.timedelta(minutes=5))
    for i in range(4):  # four flushes: four files of the first window
        log.log_columns("m", 1, f"a{i}", {"x": np.array([float(i)])}, 1, [i], 0.0)
        assert log.flush()
    assert [name.split("-")[2][0] for name in _files(tmp_path)] == ["p"] * 4
    # The window has closed (its end plus two flush intervals): the next write merges it.
    now[0] = T0 + dt.timedelta(minutes=5, seconds=2)
    log.log_columns("m", 1, "b", {"x": np.array([9.0]), "y": np.array(["new"])}, 1, [9], 0.0)
    assert log.flush()
    names = _files(tmp_path)
    assert [n[:16] for n in names] == ["20260302T100000Z", "20260302T100500Z"]
    assert [n.split("-")[2][0] for n in names] == ["c", "p"]
    frame = read_log(tmp_path, "m", T0, now[0] + dt.timedelta(minutes=5))
    assert list(frame["request_id"]) == ["a0", "a1", "a2", "a3", "b"]
    assert frame["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 9.0]
    # A record of the merged window that arrives late goes to a new file, and is read too.
    now[0] = T0 + dt.timedelta(minutes=1)
    log.log_columns("m", 1, "late", {"x": np.array([5.0])}, 1, [5], 0.0)
    counters = log.close()
    assert (counters.written, counters.write_errors) == (6, 0)
    assert len(_files(tmp_path)) == 3  # closing merges what is left: one more file per window
    frame = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=10))
    assert sorted(frame["request_id"]) == ["a0", "a1", "a2", "a3", "b", "late"]


def test_readers_skip_parts_a_merged_file_holds(tmp_path: Path) -> None:
    """As if a writer stopped between merging a window and deleting its parts."""
    from conveyor.monitoring._log import _merge

    log = InferenceLogger(tmp_path, clock=lambda: T0)
    for i in range(3):
        log.log("m", 1, f"r{i}", {"x": i}, 0, 0.0)
        assert log.flush()
    parts = sorted((tmp_path / "m" / "2026-03-02").glob("*.parquet"))
    kept = tmp_path / "kept"
    kept.mkdir()
    for part in parts:  # copies, to put back after the merge deleted them
        (kept / part.name).write_bytes(part.read_bytes())
    log.log("m", 1, "r3", {"x": 3}, 0, 0.0)
    assert log.flush()  # a part written after the merge below: not held by it
    merged = _merge(parts, upto=3)
    for copy in kept.iterdir():
        copy.rename(merged.parent / copy.name)
    assert len(list(merged.parent.glob("*.parquet"))) == 5
    frame = read_log(tmp_path, "m", T0, T0 + dt.timedelta(minutes=1))
    assert sorted(frame["request_id"]) == ["r0", "r1", "r2", "r3"]
    log.close()
