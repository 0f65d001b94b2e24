"""The inference test: budgets from policies, and real server processes measured on loopback.

The fast model (a logistic regression pipeline) and the slow one (a forest of many trees, whose
``predict`` genuinely takes tens of milliseconds) face the same budget: one passes, the other
breaks its p99 latency, and the report says so with the numbers.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.unit.evaluation._loadtest_support import (
    MODEL,
    Registered,
    fast_estimator,
    feature_rows,
    register,
    slow_estimator,
)

from conveyor.core.errors import ConfigError, InfrastructureError, UsageError, ValidationError
from conveyor.evaluation.loadtest import (
    BudgetCheck,
    InferenceBudget,
    InferenceTestReport,
    _with_checks,
    run_inference_test,
)

# Timing-sensitive (latency budgets, load): run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

if TYPE_CHECKING:
    import pandas as pd

#: One budget for both models: generous for the fast one (p50 ~12 ms, p99 ~18 ms at concurrency
#: 4 on the 2-core machine), impossible there for the slow one: every answer waits for at least
#: one batch of two ~38 ms forest calls (predict and predict_proba); measured p99 160-270 ms.
BUDGET = InferenceBudget(
    p50_ms=50, p99_ms=60, throughput_rps=20, memory_mb=2000, concurrency=4, warmup=10
)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    return register(tmp_path_factory.mktemp("fast"), fast_estimator())


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    return register(tmp_path_factory.mktemp("slow"), slow_estimator())


@pytest.fixture(scope="module")
def test_rows() -> pd.DataFrame:
    frame, _ = feature_rows(300, seed=7)
    return frame


def _server_pids(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        int(m[1])
        for r in caplog.records
        if (m := re.match(r"inference test: server pid (\d+)", r.getMessage()))
    ]


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


# -- the budget ---------------------------------------------------------------------------------


def test_budget_from_a_policy_block() -> None:
    budget = InferenceBudget.from_mapping(
        {
            "p99_ms": 50,
            "p50_ms": 10,
            "throughput_rps": 200.5,
            "memory_mb": 800,
            "concurrency": 16,
            "requests": 2000,
        },
        "policies.yaml:12",
    )
    assert budget == InferenceBudget(
        p50_ms=10.0,
        p99_ms=50.0,
        throughput_rps=200.5,
        memory_mb=800.0,
        concurrency=16,
        requests=2000,
    )
    assert isinstance(budget.p99_ms, float)
    assert budget.measured_requests == 2000
    assert InferenceBudget().measured_requests == 1000
    assert InferenceBudget(duration_s=5).measured_requests is None
    assert InferenceBudget.from_mapping({}, "x") == InferenceBudget()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"p99_ms": "50ms"},
            r"policies\.yaml:12: inference budget key 'p99_ms' is '50ms' \(str\); "
            r"it must be a number of milliseconds > 0",
        ),
        ({"p99_ms": True}, r"key 'p99_ms' is True \(bool\)"),
        ({"concurrency": 16.0}, r"key 'concurrency' is 16\.0 \(float\); it must be an integer"),
        ({"concurrency": 0}, r"key 'concurrency' is 0; it must be an integer from 1 to 1024"),
        ({"memory_mb": -1}, r"key 'memory_mb' is -1; it must be a number of megabytes > 0"),
        ({"throughput_rps": float("nan")}, r"key 'throughput_rps' is nan"),
        ({"warmup": None}, r"key 'warmup' cannot be null"),
        ({"p99": 50}, r"unknown inference budget key 'p99'"),
        ({"requests": 10, "duration_s": 5}, r"gives both 'requests' and 'duration_s'"),
    ],
)
def test_a_wrong_budget_is_refused_naming_the_key(block: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        InferenceBudget.from_mapping(block, "policies.yaml:12")
    assert str(caught.value).startswith("policies.yaml:12: ")


def test_a_budget_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^p:3: the inference budget must be a mapping, not list"
    ):
        InferenceBudget.from_mapping([50], "p:3")  # type: ignore[arg-type]


def test_a_budget_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="inference budget: inference budget key 'p99_ms'"):
        InferenceBudget(p99_ms=0)


# -- the checks ---------------------------------------------------------------------------------


def _measured(**changes: object) -> InferenceTestReport:
    report = InferenceTestReport(
        model=MODEL,
        version=1,
        budget=InferenceBudget(concurrency=4),
        concurrency=4,
        requests=100,
        rows=150,
        errors=0,
        warmup_errors=0,
        status_codes={"200": 100},
        duration_s=1.0,
        throughput_rps=100.0,
        rows_per_s=150.0,
        p50_ms=5.0,
        p90_ms=8.0,
        p99_ms=12.34,
        max_ms=13.0,
        mean_ms=6.0,
        peak_memory_mb=263.0,
        client_cpu_ms_per_request=0.1,
        client_cpu_fraction=0.01,
    )
    return _with_checks(replace(report, **changes))  # type: ignore[arg-type]


def test_checks_compare_each_budget_item_with_what_was_measured() -> None:
    budget = InferenceBudget(p50_ms=5, p99_ms=12, throughput_rps=150, memory_mb=200, concurrency=4)
    report = _measured(budget=budget)
    assert [(c.name, c.observed, c.threshold, c.passed, c.detail) for c in report.checks] == [
        ("inference.p50_ms", 5.0, 5.0, True, "p50 latency 5.0 ms <= 5 ms"),
        ("inference.p99_ms", 12.34, 12.0, False, "p99 latency 12.3 ms > 12 ms"),
        ("inference.throughput_rps", 100.0, 150.0, False, "throughput 100.0 req/s < 150 req/s"),
        ("inference.memory_mb", 263.0, 200.0, False, "peak memory (VmHWM) 263.0 MB > 200 MB"),
        (
            "inference.concurrency",
            0.0,
            0.0,
            True,
            "4 concurrent clients: 100 of 100 requests answered 2xx",
        ),
    ]
    assert not report.passed
    assert [c.name for c in report.failed] == [
        "inference.p99_ms",
        "inference.throughput_rps",
        "inference.memory_mb",
    ]


def test_failed_requests_fail_the_concurrency_check_and_unmeasured_values_fail() -> None:
    report = _measured(
        budget=InferenceBudget(p99_ms=50, memory_mb=500, concurrency=4),
        errors=100,
        warmup_errors=2,
        status_codes={"503": 40, "timeout": 60},
        p50_ms=None,
        p99_ms=None,
        peak_memory_mb=None,
    )
    checks = {c.name: c for c in report.checks}
    assert checks["inference.p99_ms"] == BudgetCheck(
        "inference.p99_ms",
        None,
        50.0,
        False,
        "p99 latency not measured: no request was answered 2xx",
    )
    assert "Linux only" in checks["inference.memory_mb"].detail
    assert not checks["inference.memory_mb"].passed
    assert checks["inference.concurrency"] == BudgetCheck(
        "inference.concurrency",
        102.0,
        0.0,
        False,
        "4 concurrent clients: 0 of 100 requests answered 2xx; 100 failed "
        "(503: 40, timeout: 60), and 2 in the warm-up",
    )
    # JSON-ready: no NaN, no objects.
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["passed"] is False
    assert data["checks"][0]["observed"] is None


# -- real server processes ----------------------------------------------------------------------


def test_a_fast_model_within_budget_passes(
    fast: Registered, test_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    budget = replace(BUDGET, requests=300)
    with caplog.at_level(logging.INFO, logger="conveyor.evaluation.loadtest"):
        report = run_inference_test(
            MODEL, fast.version, test_rows, budget, store=fast.store, artifacts=fast.artifacts
        )
    assert report.passed, report.to_dict()
    assert report.requests == 300
    assert report.status_codes == {"200": 300}
    assert report.errors == report.warmup_errors == 0
    assert report.p50_ms is not None
    assert report.p99_ms is not None
    assert 0 < report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms  # type: ignore[operator]
    assert report.throughput_rps > 0
    # Mostly single rows, some batches of 2-32: more rows than requests, far fewer than 32x.
    assert report.requests < report.rows < 8 * report.requests
    assert report.peak_memory_mb is not None
    assert 50 < report.peak_memory_mb < 2000
    assert [c.name for c in report.checks] == [
        "inference.p50_ms",
        "inference.p99_ms",
        "inference.throughput_rps",
        "inference.memory_mb",
        "inference.concurrency",
    ]
    # The load generator was not the bottleneck.
    assert report.client_cpu_fraction < 0.5
    json.dumps(report.to_dict(), allow_nan=False)
    # The server was stopped and reaped.
    (pid,) = _server_pids(caplog)
    assert _gone(pid)


def test_a_slow_model_breaks_the_same_latency_budget(
    slow: Registered, test_rows: pd.DataFrame
) -> None:
    report = run_inference_test(
        MODEL,
        slow.version,
        test_rows,
        replace(BUDGET, requests=60),
        store=slow.store,
        artifacts=slow.artifacts,
    )
    assert not report.passed
    checks = {c.name: c for c in report.checks}
    p99 = checks["inference.p99_ms"]
    assert not p99.passed
    assert p99.observed == report.p99_ms
    assert report.p99_ms is not None
    assert report.p99_ms > 60
    assert p99.detail == f"p99 latency {report.p99_ms:.1f} ms > 60 ms"
    # Slow, but it answered every request: the failure is latency, not errors.
    assert checks["inference.concurrency"].passed
    assert report.status_codes == {"200": 60}


def test_requests_slower_than_the_timeout_fail_the_concurrency_check(
    slow: Registered, test_rows: pd.DataFrame
) -> None:
    budget = InferenceBudget(p99_ms=60, concurrency=2, requests=6, warmup=0, timeout_ms=20)
    report = run_inference_test(
        MODEL, slow.version, test_rows, budget, store=slow.store, artifacts=slow.artifacts
    )
    assert report.status_codes == {"timeout": 6}
    assert report.errors == 6
    assert report.p99_ms is None
    checks = {c.name: c for c in report.checks}
    assert checks["inference.concurrency"] == BudgetCheck(
        "inference.concurrency",
        6.0,
        0.0,
        False,
        "2 concurrent clients: 0 of 6 requests answered 2xx; 6 failed (timeout: 6)",
    )
    assert checks["inference.p99_ms"].detail == (
        "p99 latency not measured: no request was answered 2xx"
    )


def test_a_timed_run_measures_for_its_duration(fast: Registered, test_rows: pd.DataFrame) -> None:
    budget = InferenceBudget(concurrency=2, duration_s=0.5, warmup=0)
    report = run_inference_test(
        MODEL, fast.version, test_rows, budget, store=fast.store, artifacts=fast.artifacts
    )
    assert report.passed
    assert report.requests > 0
    assert report.status_codes == {"200": report.requests}
    # The last requests started before the deadline and finished after it.
    assert 0.5 <= report.duration_s < 0.5 + 2.0
    assert report.throughput_rps == pytest.approx(report.requests / report.duration_s)


def test_a_version_that_does_not_exist_fails_fast_with_the_servers_reason(
    fast: Registered, test_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="conveyor.evaluation.loadtest"),
        pytest.raises(ValidationError, match="exited with code 2 before it was ready") as caught,
    ):
        run_inference_test(MODEL, 9, test_rows, BUDGET, store=fast.store, artifacts=fast.artifacts)
    assert f"model '{MODEL}' has no version 9" in str(caught.value)
    assert "\n" not in caught.value.message
    (pid,) = _server_pids(caplog)
    assert _gone(pid)


def test_a_corrupt_bundle_gives_a_clear_error_and_no_orphan_process(
    tmp_path: Path, test_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    broken = register(tmp_path, fast_estimator())
    ref = max(broken.bundle.files.values(), key=lambda r: r.size)
    from conveyor.store.artifacts import LocalArtifactStore

    path = LocalArtifactStore(Path(broken.artifacts)).location(ref.digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(10)
        fh.write(b"corrupted!")
    with (
        caplog.at_level(logging.INFO, logger="conveyor.evaluation.loadtest"),
        pytest.raises(InfrastructureError, match="exited with code 3 before it was ready") as e,
    ):
        run_inference_test(
            MODEL,
            broken.version,
            test_rows,
            BUDGET,
            store=broken.store,
            artifacts=broken.artifacts,
        )
    assert "corrupt" in str(e.value)
    assert "\n" not in e.value.message
    (pid,) = _server_pids(caplog)
    assert _gone(pid)


def test_rows_without_an_input_column_are_refused_and_the_server_stopped(
    fast: Registered, test_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="conveyor.evaluation.loadtest"),
        pytest.raises(ValidationError, match="lack the input column 'plan'"),
    ):
        run_inference_test(
            MODEL,
            fast.version,
            test_rows.drop(columns=["plan"]),
            BUDGET,
            store=fast.store,
            artifacts=fast.artifacts,
        )
    (pid,) = _server_pids(caplog)
    assert _gone(pid)


def test_no_rows_is_refused_before_a_server_starts(fast: Registered) -> None:
    frame, _ = feature_rows(0)
    with pytest.raises(ValidationError, match="has no rows to send"):
        run_inference_test(MODEL, 1, frame, BUDGET, store=fast.store, artifacts=fast.artifacts)


# -- the server pinned to a version (the capability the inference test uses) --------------------


def test_a_pinned_server_answers_with_that_version_whatever_its_stage(fast: Registered) -> None:
    from tests.unit.server._support import TestClient

    from conveyor.server import create_app
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    metadata = MetadataStore.open(fast.store)
    try:
        artifacts = LocalArtifactStore(Path(fast.artifacts))
        # The version is experimental: an unpinned server has nothing to serve.
        with TestClient(create_app(metadata, artifacts, models=[MODEL])) as client:
            assert client.get("/v2/health/ready").status_code == 503
        app = create_app(metadata, artifacts, models=[MODEL], version=fast.version)
        with TestClient(app) as client:
            assert client.get("/v2/health/ready").status_code == 200
            frame, _ = feature_rows(2, seed=3)
            body = {
                "inputs": [
                    {
                        "name": "age",
                        "shape": [2],
                        "datatype": "FP64",
                        "data": frame["age"].tolist(),
                    },
                    {
                        "name": "tenure",
                        "shape": [2],
                        "datatype": "INT64",
                        "data": frame["tenure"].tolist(),
                    },
                    {
                        "name": "plan",
                        "shape": [2],
                        "datatype": "BYTES",
                        "data": frame["plan"].tolist(),
                    },
                ]
            }
            answer = client.post(f"/v2/models/{MODEL}/infer", json=body).json()
        assert answer["model_version"] == str(fast.version)
        expected = fast_estimator().predict_proba(frame)[:, 1].tolist()
        proba = next(o for o in answer["outputs"] if o["name"] == "predict_proba")
        assert proba["data"] == pytest.approx(expected, abs=1e-12)
    finally:
        metadata.close()


def test_a_pinned_version_needs_exactly_one_model_and_must_exist(fast: Registered) -> None:
    from conveyor.core.errors import NotFoundError
    from conveyor.server.repository import ModelRepository
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    metadata = MetadataStore.open(fast.store)
    try:
        artifacts = LocalArtifactStore(Path(fast.artifacts))
        with pytest.raises(UsageError, match="serving version 1 needs exactly one model"):
            ModelRepository(metadata, artifacts, version=1)
        with pytest.raises(UsageError, match="needs exactly one model"):
            ModelRepository(metadata, artifacts, models=[MODEL, "other"], version=1)
        with pytest.raises(NotFoundError, match="no version 9"):
            ModelRepository(metadata, artifacts, models=[MODEL], version=9).refresh()
    finally:
        metadata.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--version", "2"], "--version needs exactly one --model"),
        (["--model", "a", "--model", "b", "--version", "2"], "--version needs exactly one --model"),
        (["--model", "a", "--version", "0"], "'0' is not a version number"),
        (["--model", "a", "--version", "v2"], "'v2' is not a version number"),
    ],
)
def test_the_server_command_checks_its_version_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.server.__main__ import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
