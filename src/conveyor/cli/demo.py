"""``conveyor demo``: the whole delivery path, end to end, on the bundled churn example.

It works in a fresh folder, as a user would: generate data, run the pipeline (twice: the second
run is all cached), promote v1, serve it and send real requests, retrain on a drifted month and
watch the gate stop it, tune the January model and roll it out as a canary under live traffic
(analysed against v1, reviewed, promoted), then roll back and prove the server answers with v1's
exact predictions again, run one monitoring round over all the traffic the server logged (drift,
prediction drift, quality and latency against the training reference, the example's alert
rules) and show the model's incident timeline, and verify the audit trail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli._common import console
from conveyor.core.clock import utcnow
from conveyor.core.env import (
    CONVEYOR_ARTIFACTS,
    CONVEYOR_CONFIG,
    CONVEYOR_PROJECT_DIR,
    CONVEYOR_STORE,
    CONVEYOR_USER,
)
from conveyor.core.errors import CheckFailedError, InfrastructureError, UsageError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator

    import httpx
    import pandas as pd
    from rich.console import Console

    from conveyor.project import Project

__all__ = ["demo"]

_MODEL = "churn"
_ROWS = 20_000
_SERVER_DEADLINE_S = 60.0


def find_example(explicit: Path | None) -> Path:
    """The bundled example project: ``--example``, else ``examples/churn`` above the package."""
    if explicit is not None:
        candidates = [explicit]
    else:
        here = Path(__file__).resolve()
        candidates = [p / "examples" / "churn" for p in here.parents]
    for candidate in candidates:
        if (candidate / "conveyor.yaml").is_file():
            return candidate
    raise UsageError(
        "cannot find the example project (examples/churn with a conveyor.yaml)",
        hint="run from a Conveyor source checkout, or pass --example PATH",
    )


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to build the demo in (must be empty or absent); default: a new temporary folder.",
)
@click.option(
    "--example",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The example project to copy (default: examples/churn of this checkout).",
)
def demo(workdir: Path | None, example: Path | None) -> None:
    """Run the whole path end to end on the bundled churn example, telling the story."""
    source = find_example(example)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
    elif workdir.exists() and any(workdir.iterdir()):
        raise UsageError(
            f"demo folder {workdir} is not empty", hint="pass an empty or new --dir, or omit it"
        )
    out = console()
    started = time.perf_counter()
    _Story(out, source, workdir.resolve()).tell()
    out.print(
        f"\n[bold green]demo complete[/bold green] in {time.perf_counter() - started:.1f} s"
        f" — the project is in {workdir}"
    )


class _Story:
    def __init__(self, out: Console, source: Path, root: Path) -> None:
        self.out = out
        self.source = source
        self.root = root
        self.chapter = 0

    def title(self, text: str) -> None:
        self.chapter += 1
        self.out.print(f"\n[bold]{self.chapter}. {text}[/bold]")

    def say(self, text: str) -> None:
        self.out.print(f"   {text}")

    def tell(self) -> None:
        from conveyor.project import open_project

        self.title(f"A fresh project in {self.root}")
        self._scaffold()
        self._generate_data()
        # Isolate the demo from the caller's environment: its stores live in its own folder.
        for var in (CONVEYOR_STORE, CONVEYOR_ARTIFACTS, CONVEYOR_CONFIG, CONVEYOR_PROJECT_DIR):
            os.environ.pop(var, None)
        os.environ.setdefault(CONVEYOR_USER, "demo-scientist")
        with open_project(self.root) as project:
            self._story(project)

    def _story(self, project: Project) -> None:
        from conveyor.project import rollback, verify_audit

        self.title("Run the pipeline: ingest -> validate -> split -> train -> evaluate -> register")
        v1 = self._run(project)
        self.title("Run it again with nothing changed")
        self._run(project)

        self.title(f"Promote v{v1} to candidate, then to production, through policies.yaml's gates")
        self._promote(project, v1, expect_pass=True)

        self.title("Serve production over the Open Inference Protocol v2, send real requests")
        served_from = utcnow()
        with self._server() as client:
            rows = self._eval_rows(5)
            first = self._infer(client, rows, expect_version=v1)
            self._show_predictions(first, rows)

            self.title("February's data has drifted; retrain on it (only data-dependent steps run)")
            self._set_param("data_path", "data/2026-02.csv")
            v2 = self._run(project)
            self.title(f"Try to promote v{v2}: the gates stand between it and production v{v1}")
            self._promote(project, v2, expect_pass=False)
            self._infer(client, rows, expect_version=v1)
            self.say(f"the server still answers with v{v1}: nothing moved")

            self.title("Back to January's data with a tuned learning rate (data steps are cached)")
            self._set_param("data_path", "data/2026-01.csv")
            self._set_param("learning_rate", 0.05)
            v3 = self._run(project)
            self._promote(project, v3, expect_pass=True, stages=("candidate",))
            self.title(
                f"Canary v{v3} under live traffic: 25% of requests, analysed against v{v1}, "
                "then production"
            )
            self._canary(project, client, v3)
            third = self._infer(client, rows, expect_version=v3)
            self.say(
                f"the server switched to v{v3} without a restart: {third['model_version']} answered"
            )

            self.title("An incident: roll back at once")
            result = rollback(project, model=_MODEL, actor="demo-oncall", reason="demo incident")
            self.say(f"production rolled back from v{result.from_version} to v{result.to_version}")
            back = self._infer(client, rows, expect_version=v1)
            if back["outputs"] != first["outputs"]:
                raise InfrastructureError("after the rollback the answers differ from v1's")
            self.say(f"the server answers with v{v1} again, with exactly v{v1}'s predictions")

        # The server has exited, and closed its inference log on the way: every answer is on disk.
        self.title("Monitor production: one round over everything the server answered")
        self._monitor(project, since=served_from)

        self.title("Verify the audit trail")
        report = verify_audit(project)
        if not report.ok:
            raise InfrastructureError(f"audit chain broken at event {report.broken_seq}")
        self.say(
            f"{report.events} events, every hash link intact (`conveyor audit log` lists them)"
        )

    # -- steps of the story -------------------------------------------------------------------

    def _scaffold(self) -> None:
        ignore = shutil.ignore_patterns("__pycache__", ".conveyor", "*.csv", ".pytest_cache")
        shutil.copytree(self.source, self.root, dirs_exist_ok=True, ignore=ignore)
        self.say(
            "copied the example: training/, inference/, data/, tests/, conveyor.yaml, policies.yaml"
        )

    def _generate_data(self) -> None:
        script = self.root / "data" / "generate.py"
        spec = importlib.util.spec_from_file_location("_demo_generate", script)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot load {self.root / 'data' / 'generate.py'}")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: dataclasses look their module up in sys.modules.
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        data = self.root / "data"
        jan = module.generate("2026-01", _ROWS, 7, drift=False)
        feb = module.generate("2026-02", _ROWS, 8, drift=True)
        holdout = module.generate("2026-01", _ROWS // 4, 9, drift=False)
        jan.to_csv(data / "2026-01.csv", index=False)
        feb.to_csv(data / "2026-02.csv", index=False)
        holdout.to_csv(data / "eval-2026-01.csv", index=False)
        self.say(
            f"generated January ({_ROWS} rows), a drifted February ({_ROWS} rows) and a "
            "January hold-out for evaluation"
        )

    def _run(self, project: Project) -> int:
        from conveyor.project import run

        statuses: list[str] = []

        def on_event(event: Any) -> None:
            statuses.append(event.status)
            style = {"ran": "green", "cached": "cyan"}.get(event.status, "red")
            self.say(
                f"[{style}]{event.status:>7}[/{style}]  {event.name:<12} "
                f"{event.duration_s * 1000:7.1f} ms"
            )

        started = time.perf_counter()
        project.config = _reload(project)
        report = run(project, actor="demo-scientist", on_event=on_event)
        elapsed = time.perf_counter() - started
        assert report.version is not None
        v = report.version
        cached = statuses.count("cached")
        note = "registered" if report.created else "unchanged: already"
        self.say(
            f"{len(statuses)} steps, {cached} cached, {elapsed:.2f} s; model {v.model} "
            f"{note} v{v.version} ({v.stage}); roc_auc={v.metrics.get('roc_auc', float('nan')):.4f}"
        )
        return v.version

    def _promote(
        self,
        project: Project,
        version: int,
        *,
        expect_pass: bool,
        stages: tuple[str, ...] = ("candidate", "production"),
    ) -> None:
        """Promote ``version`` to candidate, then to production (no stage is skipped); the
        first gate that fails ends the attempt, and the version stays where it is."""

        for stage in stages:
            try:
                result = self._promote_reviewed(project, version, stage)
            except CheckFailedError as exc:
                if expect_pass:
                    raise
                for check in exc.details.get("checks", []):
                    mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
                    self.say(
                        f"{mark}  {check['check']:<44} observed {_fmt(check.get('observed'))}"
                        f"  threshold {_fmt(check.get('threshold'))}"
                    )
                checks = exc.details.get("checks", [])
                failed = sum(1 for c in checks if not c["passed"])
                self.say(
                    f"[red]v{version} stays {exc.details.get('from_stage', 'where it is')}:[/red] "
                    f"{failed} of {len(checks)} checks failed, so nothing moved"
                )
                return
            for check in result.checks:
                self.say(
                    f"[green]pass[/green]  {check.check:<44} observed {_fmt(check.observed)}"
                    f"  threshold {_fmt(check.threshold)}"
                )
            self.say(
                f"v{version}: {result.from_stage} -> [bold green]{result.to_stage}[/bold green]"
            )
        if not expect_pass:
            raise InfrastructureError(f"v{version} passed gates the demo expected it to fail")

    def _canary(self, project: Project, client: httpx.Client, version: int) -> None:
        """Roll ``version`` out with ``conveyor deploy``'s controller while clients send
        requests; the production review is given when the rollout waits for it."""
        from conveyor.project import review
        from conveyor.project._deploy import drive, start_deploy

        started, _, _ = start_deploy(
            project,
            model=_MODEL,
            version=version,
            strategy="canary",
            canary="25,100",
            shadow_sample=1.0,
            actor="demo-deployer",
            reason="demo",
        )
        self.say(
            f"`conveyor deploy {_MODEL} {version} --canary 25,100`: rollout {started.id}, "
            f"analysis every {started.settings['interval_s']:g} s, at least "
            f"{started.settings['min_requests']} requests per version"
        )

        def report(outcome: Any) -> None:
            analysis = outcome.analysis
            if analysis is not None and outcome.action in ("analysed", "awaiting-approval"):
                checks = ", ".join(
                    f"{c['name']} {c['verdict']}" for c in analysis.get("checks", [])
                )
                self.say(
                    f"analysis: {analysis['verdict']} on {analysis['candidate_requests']} canary "
                    f"/ {analysis['stable_requests']} stable requests ({checks})"
                )
            if outcome.action == "awaiting-approval":
                review(
                    project,
                    model=_MODEL,
                    version=version,
                    stage="production",
                    decision="approve",
                    actor="demo-reviewer",
                    comment="canary analysis reviewed",
                )
                self.say(f"demo-reviewer approved v{version} for production (the author could not)")

        with _Traffic(client, self._eval_rows(500), self.client_meta) as traffic:
            final = drive(project, model=_MODEL, actor="demo-deployer", every=0.2, report=report)
        if final.action != "succeeded":
            raise InfrastructureError(f"the demo's canary did not succeed: {final.message}")
        self.say(
            f"[bold green]promoted[/bold green]: {traffic.sent} requests during the rollout, "
            f"{traffic.by_version.get(str(version), 0)} answered by the canary, "
            f"{traffic.failed} failed"
        )
        if traffic.failed:
            raise InfrastructureError(f"{traffic.failed} requests failed during the canary")

    def _monitor(self, project: Project, *, since: dt.datetime) -> None:
        """One monitoring round over ``[since, now)`` with the example's rules, then the alert
        states and the model's timeline."""
        from conveyor.cli.monitor import build_monitor, summarize_window
        from conveyor.monitoring import list_alerts, timeline
        from conveyor.registry import production_version

        started = time.perf_counter()
        project.config = _reload(project)
        monitor = build_monitor(project, model=_MODEL)
        self.say(
            f"monitoring.yaml: {len(monitor.rules)} alert rules "
            f"({', '.join(r.name for r in monitor.rules)}); runbooks/ holds their runbooks"
        )
        result = monitor.run_once(span=(since, utcnow()))
        production = production_version(project.metadata, _MODEL)
        assert production is not None  # build_monitor refuses a model without one
        if not result.windows:
            raise InfrastructureError("the server logged no requests for the monitor to read")
        self.say(
            f"`conveyor monitor run --once` over the server's inference log: "
            f"{len(result.windows)} window in {time.perf_counter() - started:.2f} s, against "
            f"production v{production.version}'s training data and its answers on it"
        )
        for window in result.windows:
            self.say(summarize_window(window))
        with project.metadata.read() as conn:
            states = list_alerts(conn, model=_MODEL)
        self.say(
            "alert states: " + ", ".join(f"{s.rule} {s.state} ({_fmt(s.value)})" for s in states)
        )
        self.say(
            "every rule must hold for its `for:` (minutes of windows) before it fires, so one "
            "round makes a rule pending at most: a transient spike pages nobody"
        )
        events = timeline(project.metadata, _MODEL)
        self.say(f"incident timeline of {_MODEL} (`conveyor incident timeline {_MODEL}`):")
        for event in events[-8:]:
            self.say(f"  {event.at:%H:%M:%S}  {event.kind:<9} {event.summary}")

    def _promote_reviewed(self, project: Project, version: int, stage: str) -> Any:
        """Promote; when the gate waits for a review, a reviewer (not the author) approves it
        and the promotion runs again."""
        from conveyor.core.errors import ApprovalPendingError
        from conveyor.project import promote, review

        try:
            return promote(
                project, model=_MODEL, version=version, to=stage, actor="demo-lead", reason="demo"
            )
        except ApprovalPendingError as exc:
            self.say(f"[yellow]waiting[/yellow]  {exc.message.split(': ', 1)[-1]}")
        review(
            project,
            model=_MODEL,
            version=version,
            stage=stage,
            decision="approve",
            actor="demo-reviewer",
            comment="evaluation and inference test reviewed",
        )
        self.say(f"demo-reviewer approved v{version} for {stage} (the author could not)")
        return promote(
            project, model=_MODEL, version=version, to=stage, actor="demo-lead", reason="demo"
        )

    def _set_param(self, key: str, value: object) -> None:
        import yaml

        path = self.root / "conveyor.yaml"
        data = yaml.safe_load(path.read_text())
        data["params"][key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.say(f"conveyor.yaml: params.{key} = {value}")

    def _eval_rows(self, n: int) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.root / "data" / "eval-2026-01.csv", nrows=n)

    @contextlib.contextmanager
    def _server(self) -> Iterator[httpx.Client]:
        import httpx

        port = _free_port()
        env = {**os.environ, CONVEYOR_PROJECT_DIR: str(self.root)}
        cmd = [
            sys.executable,
            "-m",
            "conveyor",
            "serve",
            "--port",
            str(port),
            "--poll-interval",
            "0.2",
        ]
        log = (self.root / ".conveyor" / "server.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=10.0) as client:
                _wait_ready(client, proc, self.root / ".conveyor" / "server.log")
                self.say(f"`conveyor serve` is up at {base} (pid {proc.pid})")
                self.client_meta = client.get(f"/v2/models/{_MODEL}").json()
                yield client
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    def _infer(self, client: httpx.Client, rows: pd.DataFrame, *, expect_version: int) -> Any:
        body = {
            "inputs": [
                {
                    "name": spec["name"],
                    "datatype": spec["datatype"],
                    "shape": [len(rows)],
                    "data": rows[spec["name"]].tolist(),
                }
                for spec in self.client_meta["inputs"]
            ]
        }
        # The server notices a stage change within its poll interval; wait for it, bounded.
        deadline = time.monotonic() + 15
        while True:
            response = client.post(f"/v2/models/{_MODEL}/infer", json=body)
            if response.status_code != 200:
                raise InfrastructureError(
                    f"server answered {response.status_code}: {response.text}"
                )
            answer = response.json()
            if answer["model_version"] == str(expect_version):
                return answer
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"server still answers with v{answer['model_version']}, "
                    f"expected v{expect_version}"
                )
            time.sleep(0.05)

    def _show_predictions(self, answer: Any, rows: pd.DataFrame) -> None:
        outputs = {o["name"]: o["data"] for o in answer["outputs"]}
        proba = outputs.get("predict_proba") or outputs.get("predict") or []
        for customer, p in zip(rows["customer_id"], proba, strict=False):
            self.say(f"customer {customer}: churn probability {float(p):.3f}")
        self.say(f"answered by {answer['model_name']} v{answer['model_version']}")


class _Traffic:
    """Clients sending requests (one row each, with a routing key) until the block ends."""

    def __init__(self, client: httpx.Client, rows: pd.DataFrame, meta: Any) -> None:
        self._base = str(client.base_url)
        self._bodies = [
            {
                "inputs": [
                    {
                        "name": spec["name"],
                        "datatype": spec["datatype"],
                        "shape": [1],
                        "data": [row[spec["name"]]],
                    }
                    for spec in meta["inputs"]
                ]
            }
            for row in rows.to_dict("records")
        ]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.sent = 0
        self.failed = 0
        self.by_version: dict[str, int] = {}

    def __enter__(self) -> _Traffic:
        for index in range(4):
            thread = threading.Thread(target=self._send, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _send(self, index: int) -> None:
        import httpx

        with httpx.Client(base_url=self._base, timeout=10.0) as client:
            count = 0
            while not self._stop.is_set():
                count += 1
                body = self._bodies[(index * 7919 + count) % len(self._bodies)]
                key = f"customer-{(index * 7919 + count) % 5000}"
                try:
                    response = client.post(
                        f"/v2/models/{_MODEL}/infer",
                        json=body,
                        headers={"x-conveyor-routing-key": key},
                    )
                    ok = response.status_code == 200
                    version = response.headers.get("x-conveyor-model-version", "?")
                except httpx.HTTPError:
                    ok, version = False, "?"
                with self._lock:
                    self.sent += 1
                    if ok:
                        self.by_version[version] = self.by_version.get(version, 0) + 1
                    else:
                        self.failed += 1


def _reload(project: Project) -> Any:
    from conveyor.core.config import load_config

    return load_config(project.config.root)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + _SERVER_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise InfrastructureError(
                f"the server exited with code {proc.returncode}: {' '.join(tail)}"
            )
        with contextlib.suppress(httpx.TransportError):
            if client.get("/v2/health/ready").status_code == 200:
                return
        time.sleep(0.1)
    raise InfrastructureError(
        f"the server was not ready within {_SERVER_DEADLINE_S:.0f} s; see {log}"
    )
