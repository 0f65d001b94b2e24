"""Row 5: single-row inference over HTTP at concurrency 16, on loopback.

The same fitted logistic-regression model (``sides/make_serving_model.py``) behind three servers:

- Conveyor: ``python -m conveyor serve`` (Open Inference Protocol v2), in a throwaway project
  made afresh once per session in ``work/row5/conveyor-project`` by
  ``sides/conveyor_serving_project.py`` (under Conveyor's venv): a SQLite metadata store and a
  local artifact store, the anchors' ``model.joblib`` packaged with ``Model`` + ``build_bundle``,
  registered with ``register_version`` and promoted to production with an empty policy. The
  server finds them through CONVEYOR_STORE / CONVEYOR_ARTIFACTS / CONVEYOR_PROJECT_DIR. Request:
  one ``[1]`` FP64 tensor per column (the signature's f00 ... f19).
- MLServer 1.7 (sklearn runtime, default settings: one inference worker process). Request: the
  same row as one ``[1, 20]`` FP64 tensor, as its sklearn runtime takes it.
- ``mlflow models serve`` (default: one uvicorn worker). Request: the same row as
  ``dataframe_split``.

Each side starts its server, waits (at most 120 s) until its readiness URL answers 2xx and one
inference request succeeds, sends load for a fixed time with ``bench/loadgen.py`` (closed loop,
keep-alive, the same load generator for every side) and stops the server. The load generator
shares the machine's 2 cores with the server; it reports its own CPU use (``client_cpu``, a
fraction of one core) so that a run where it, not the server, was the limit shows.

Server overhead (5e-5i, Conveyor's own server only): after the c=16 load the driver loads the
same server at concurrency 1 for a few seconds (5e: its p50), stops it, then runs
``sides/conveyor_inprocess_predict.py`` under Conveyor's venv: the same row as a one-row
DataFrame through ``load_bundle(...).predict`` (5f, every output, as the server computes them)
and plain ``estimator.predict_proba`` (5g), one call at a time; 5h = 5e - 5f, 5i = 5e / 5f.

BENCH_CONVEYOR_SERVE_URL (the POST endpoint), BENCH_CONVEYOR_SERVE_BODY (a file with one request
body) and optionally BENCH_CONVEYOR_SERVE_READY (a URL that answers 2xx once the model is
loaded) measure an already running server as the Conveyor side instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import HARNESS_PYTHON, SIDES, Context, free_port, run_checked

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "bench"  # the model's name in every server
LOGGED = "conveyor (inference log on)"  # Conveyor's server with its monitoring log on


def build(ctx: Context) -> list[Benchmark]:
    mlserver, mlflow = ctx.anchor("mlserver"), ctx.anchor("mlflow")
    work = ctx.work("row5")
    model = work / "model"
    duration, warm = (5, 1) if ctx.quick else (20, 2)
    c1_duration, inproc_calls = (2, 1000) if ctx.quick else (5, 3000)
    load = ["--concurrency", "16", "--duration", str(duration), "--warmup", str(warm)]
    driver = [HARNESS_PYTHON, str(SIDES / "serve_and_load.py")]

    project = work / "conveyor-project"
    logged_project = work / "conveyor-project-logged"
    logged: Side | None = None

    def setup() -> None:
        if not all((model / f).exists() for f in ("body-conveyor.json", "example.json")):
            python = mlflow.python if mlflow.unavailable is None else mlserver.python
            run_checked([python, str(SIDES / "make_serving_model.py"), str(model)], cwd=work)
        if conveyor.argv and conveyor.unavailable is None and not external:
            conveyor.unavailable = _make_conveyor_project(tool.python, model, project)
        if logged is not None and logged.unavailable is None:
            logged.unavailable = _make_conveyor_project(
                tool.python, model, logged_project, "--inference-log"
            )

    url = os.environ.get("BENCH_CONVEYOR_SERVE_URL")
    body = os.environ.get("BENCH_CONVEYOR_SERVE_BODY", "")
    external = bool(url and body)
    tool = ctx.conveyor()
    if external:
        assert url is not None
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

        def conveyor_side(name: str, home: Path, overhead: bool) -> Side:
            port = free_port()
            extra = (
                [
                    "--c1-duration",
                    str(c1_duration),
                    "--inproc",
                    json.dumps(
                        [
                            tool.python,
                            str(SIDES / "conveyor_inprocess_predict.py"),
                            str(model),
                            str(home),
                            "--calls",
                            str(inproc_calls),
                        ]
                    ),
                ]
                if overhead
                else []
            )
            return Side(
                name,
                "conveyor",
                [
                    *driver,
                    "--ready",
                    f"http://127.0.0.1:{port}/v2/health/ready",
                    "--url",
                    f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
                    "--body",
                    str(model / "body-conveyor.json"),
                    "--log",
                    str(work / f"{home.name}.log"),
                    *load,
                    *extra,
                    "--",
                    tool.python,
                    "-m",
                    "conveyor",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=work,
                env={
                    "CONVEYOR_STORE": f"sqlite:///{home / 'metadata.db'}",
                    "CONVEYOR_ARTIFACTS": str(home / "artifacts"),
                    "CONVEYOR_PROJECT_DIR": str(home),
                },
                unavailable=tool.unavailable,
                timeout=300,
            )

        conveyor = conveyor_side("conveyor", project, overhead=True)
        logged = conveyor_side(LOGGED, logged_project, overhead=False)

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
        *([logged] if logged is not None else []),
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
        "server start excluded; the load generator shares the 2 cores with the server.",
        "the same fitted model in every server; Conveyor answers with `predict` and "
        "`predict_proba` (its signature's outputs), the anchors with `predict` only.",
    ]
    if not external:
        notes.append(
            f"5e-5i, server overhead: after the c=16 load, {c1_duration} s of load at "
            "concurrency 1 on the same server (5e: its p50); once the server is stopped, "
            "the same row as a one-row DataFrame, predicted in a separate process under "
            "Conveyor's venv, one call at a time (median of "
            f"{inproc_calls} calls after 200 untimed): 5f `load_bundle(...).predict` with "
            "every output (`predict` and `predict_proba`, the server's work for this request), "
            "5g plain scikit-learn `estimator.predict_proba`; 5h = 5e - 5f, 5i = 5e / 5f. "
            "The side checks that the bundle's estimator has the anchors' coefficients and "
            "that its row is the anchors' row."
        )
    if logged is not None:
        notes.append(
            "5j-5k, what the monitoring log costs: a second Conveyor side, `conveyor (inference "
            "log on)`, serves the same model from a project whose `conveyor.yaml` turns "
            "`monitoring.log` on (every request logged, sample rate 1); the same load, "
            "alternating with the other sides. Ratio = logged / not logged for req/s, not "
            "logged / logged for p99: 1 means logging costs nothing. Run-to-run noise of this "
            "row on 2 cores is about ±10% on either side."
        )
    if ctx.quick:
        notes.append(f"quick mode: {duration} s of load instead of 20 s, one round.")
    overhead = [
        ("5e", "one request at c=1: p50 latency over HTTP", Metric("c1_p50_s", "s")),
        ("5f", "one in-process `load_bundle(...).predict` call", Metric("inproc_predict_s", "s")),
        (
            "5g",
            "one in-process scikit-learn `predict_proba` call",
            Metric("inproc_sklearn_proba_s", "s"),
        ),
        ("5h", "server overhead over in-process predict (5e - 5f)", Metric("overhead_s", "s")),
        ("5i", "server overhead as a ratio (5e / 5f)", Metric("overhead_x", "x")),
    ]
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
                *(
                    Comparison(row, work_, metric, "conveyor", "no anchor")
                    for row, work_, metric in ([] if external else overhead)
                ),
                *(
                    [
                        Comparison(
                            "5j",
                            "c=16 throughput, every request logged vs logging off",
                            rps,
                            LOGGED,
                            "conveyor",
                            Goal("within noise (>= 0.9x)", min_ratio=0.9),
                        ),
                        Comparison(
                            "5k",
                            "c=16 p99 latency, every request logged vs logging off",
                            p99,
                            LOGGED,
                            "conveyor",
                            Goal("within noise (>= 0.8x)", min_ratio=0.8),
                        ),
                    ]
                    if logged is not None
                    else []
                ),
            ],
            warmup=0,
            rounds=1 if ctx.quick else 3,
            setup=setup,
            notes=notes,
        )
    ]


def _make_conveyor_project(python: str, model: Path, project: Path, *flags: str) -> str | None:
    """Make Conveyor's throwaway project; None when it is ready, else why the side cannot run."""
    from harness import EXIT_UNAVAILABLE, side_env

    proc = subprocess.run(
        [python, str(SIDES / "conveyor_serving_project.py"), str(model), str(project), *flags],
        env=side_env({}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode == 0:
        return None
    if proc.returncode == EXIT_UNAVAILABLE:
        try:
            return str(json.loads(proc.stdout.strip().splitlines()[-1])["unavailable"])
        except (ValueError, IndexError, KeyError):
            pass
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-4:]
    return f"conveyor project setup failed (exit {proc.returncode}): " + " | ".join(tail)


__all__ = ["build"]
