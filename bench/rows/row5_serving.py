"""Row 5: single-row inference over HTTP at concurrency 16, on loopback.

Anchors: MLServer 1.7 (sklearn runtime, default settings: one inference worker process) and
``mlflow models serve`` (default: one uvicorn worker), on the same logistic-regression model.
Each side starts its server, waits until the model answers, sends load for a fixed time with
``bench/loadgen.py`` (closed loop, keep-alive, the same load generator for every side) and stops
the server. The load generator shares the machine's 2 cores with the server.

The Conveyor side lands with issue 5. Until then, any running server can be measured as the
Conveyor side by setting BENCH_CONVEYOR_SERVE_URL (the POST endpoint),
BENCH_CONVEYOR_SERVE_BODY (a file with one request body) and optionally
BENCH_CONVEYOR_SERVE_READY (a URL that answers 2xx once the model is loaded).
"""

from __future__ import annotations

import os

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import HARNESS_PYTHON, SIDES, Context, free_port, run_checked


def build(ctx: Context) -> list[Benchmark]:
    mlserver, mlflow = ctx.anchor("mlserver"), ctx.anchor("mlflow")
    work = ctx.work("row5")
    model = work / "model"
    duration, warm = (5, 1) if ctx.quick else (20, 2)
    load = ["--concurrency", "16", "--duration", str(duration), "--warmup", str(warm)]
    driver = [HARNESS_PYTHON, str(SIDES / "serve_and_load.py")]

    def setup() -> None:
        if not (model / "body-mlflow.json").exists():
            python = mlflow.python if mlflow.unavailable is None else mlserver.python
            run_checked([python, str(SIDES / "make_serving_model.py"), str(model)], cwd=work)

    url = os.environ.get("BENCH_CONVEYOR_SERVE_URL")
    body = os.environ.get("BENCH_CONVEYOR_SERVE_BODY", "")
    if url and body:
        conveyor = Side(
            "conveyor",
            "conveyor",
            [
                *driver,
                "--ready",
                os.environ.get("BENCH_CONVEYOR_SERVE_READY", url),
                "--url",
                url,
                "--body",
                body,
                *load,
            ],
            timeout=300,
        )
    else:
        conveyor = Side(
            "conveyor", "conveyor", [], unavailable="pending: conveyor side lands with issue 5"
        )

    ms_port, mf_port = free_port(), free_port()
    ms_env = {
        "PATH": f"{mlserver.venv / 'bin'}:{os.environ.get('PATH', '')}",
        "MLSERVER_HTTP_PORT": str(ms_port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
    }
    mf_env = {"PATH": f"{mlflow.venv / 'bin'}:{os.environ.get('PATH', '')}"}
    sides = [
        conveyor,
        Side(
            "mlserver",
            "anchor",
            [
                *driver,
                "--ready",
                f"http://127.0.0.1:{ms_port}/v2/models/bench/ready",
                "--url",
                f"http://127.0.0.1:{ms_port}/v2/models/bench/infer",
                "--body",
                str(model / "body-mlserver.json"),
                "--log",
                str(work / "mlserver.log"),
                *load,
                "--",
                mlserver.bin("mlserver"),
                "start",
                ".",
            ],
            cwd=model / "mlserver",
            env=ms_env,
            unavailable=mlserver.unavailable,
            timeout=300,
        ),
        Side(
            "mlflow models serve",
            "anchor",
            [
                *driver,
                "--ready",
                f"http://127.0.0.1:{mf_port}/ping",
                "--url",
                f"http://127.0.0.1:{mf_port}/invocations",
                "--body",
                str(model / "body-mlflow.json"),
                "--log",
                str(work / "mlflow.log"),
                *load,
                "--",
                mlflow.bin("mlflow"),
                "models",
                "serve",
                "-m",
                str(model / "mlflow-model"),
                "-p",
                str(mf_port),
                "-h",
                "127.0.0.1",
                "--env-manager",
                "local",
            ],
            cwd=work,
            env=mf_env,
            unavailable=mlflow.unavailable,
            timeout=300,
        ),
    ]
    rps, p99 = Metric("rps", "req/s", higher_is_better=True), Metric("p99_s", "s")
    more, lower = Goal("more req/s than both", min_ratio=1), Goal("lower p99", min_ratio=1)
    notes = [
        f"concurrency 16 for {duration} s after {warm} s of warm-up load, per round; "
        "server start excluded; the load generator shares the 2 cores with the server."
    ]
    if ctx.quick:
        notes.append(f"quick mode: {duration} s of load instead of 20 s, one round.")
    return [
        Benchmark(
            id="5",
            title="single-row inference over HTTP",
            sides=sides,
            comparisons=[
                Comparison("5a", "inference, c=16: throughput", rps, "conveyor", "mlserver", more),
                Comparison(
                    "5b", "inference, c=16: p99 latency", p99, "conveyor", "mlserver", lower
                ),
                Comparison(
                    "5c",
                    "inference, c=16: throughput",
                    rps,
                    "conveyor",
                    "mlflow models serve",
                    more,
                ),
                Comparison(
                    "5d",
                    "inference, c=16: p99 latency",
                    p99,
                    "conveyor",
                    "mlflow models serve",
                    lower,
                ),
            ],
            pending=None if url and body else "conveyor side lands with issue 5",
            warmup=0,
            rounds=1 if ctx.quick else 3,
            setup=setup,
            notes=notes,
        )
    ]


__all__ = ["build"]
