"""``conveyor deploy`` and ``conveyor rollout`` as a user runs them, on the example project with
the example policy: the refusals, the manual controls of a detached rollout, a driven rollout
that fails for want of traffic, and a rollout superseded by another candidate.

Getting versions to candidate and production takes real pipeline runs and gates, so the module
builds the registry once, snapshots the project at three points, and every test works on its
own copy of a snapshot.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e._cli import Result, conveyor

if TYPE_CHECKING:
    from pathlib import Path

AUTHOR = {"CONVEYOR_USER": "sam-scientist"}
REVIEWER = {"CONVEYOR_USER": "rita-reviewer"}
OPERATOR = {"CONVEYOR_USER": "olga-operator"}
INCIDENT = re.compile(r"incident ([0-9a-z]{26})")


def _ok(result: Result) -> Result:
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    return result


def _error_line(result: Result, code: int) -> str:
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    return lines[0]


def _set_rollout_block(project: Path, block: str) -> None:
    """Replace the example policy's top-level ``rollout:`` block (its last block) by ``block``."""
    policy = project / "policies.yaml"
    head, sep, _ = policy.read_text().partition("\nrollout:")
    assert sep, "the example policy has a rollout: block"
    policy.write_text(f"{head}\n{block}\n")


def _rollout_actions(project: Path) -> list[dict[str, Any]]:
    log = _ok(conveyor("audit", "log", "--action", "rollout.", "--json", cwd=project))
    return [json.loads(line) for line in log.out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory, generated_data: Path) -> dict[str, Path]:
    """The example project at three points of its history, each a folder to copy from.

    - ``no_production``: v1 is a candidate; nothing is in production.
    - ``one_candidate``: v1 in production, v2 a candidate, v3 experimental.
    - ``two_candidates``: the same with v3 a candidate too.
    """
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "churn"
    root = tmp_path_factory.mktemp("deploy")
    build = root / "build"
    shutil.copytree(
        example, build, ignore=shutil.ignore_patterns("__pycache__", ".conveyor", "*.csv")
    )
    for csv in generated_data.iterdir():
        shutil.copy(csv, build / "data" / csv.name)
    saved: dict[str, Path] = {}

    def snapshot(name: str) -> None:
        saved[name] = shutil.copytree(build, root / name)

    config = build / "conveyor.yaml"
    _ok(conveyor("run", cwd=build, env=AUTHOR))
    _ok(conveyor("promote", "churn", "1", "--to", "candidate", cwd=build, env=AUTHOR))
    snapshot("no_production")
    _ok(conveyor("approve", "churn", "1", "--stage", "production", cwd=build, env=REVIEWER))
    _ok(conveyor("promote", "churn", "1", "--to", "production", cwd=build, env=AUTHOR))
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 50"))
    assert "registered version 2" in _ok(conveyor("run", cwd=build, env=AUTHOR)).out
    _ok(conveyor("promote", "churn", "2", "--to", "candidate", cwd=build, env=AUTHOR))
    config.write_text(config.read_text().replace("n_estimators: 50", "n_estimators: 60"))
    assert "registered version 3" in _ok(conveyor("run", cwd=build, env=AUTHOR)).out
    snapshot("one_candidate")
    _ok(conveyor("promote", "churn", "3", "--to", "candidate", cwd=build, env=AUTHOR))
    snapshot("two_candidates")
    return saved


def _copy(snapshots: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return shutil.copytree(snapshots[name], tmp_path / "churn")


def test_what_cannot_be_deployed_is_refused_in_one_line(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)

    commands = {
        "experimental": ("3",),
        "5,25": ("2", "--canary", "5,25"),
        "50,25,100": ("2", "--canary", "50,25,100"),
        "0,100": ("2", "--canary", "0,100"),
        "x": ("2", "--canary", "x"),
        "both": ("2", "--canary", "10,100", "--shadow"),
        "local": ("2", "--emit", "k8s", "--image", "c:1"),
        "no_image": ("2", "--emit", "k8s"),
    }
    lines = {
        key: _error_line(conveyor("deploy", "churn", *args, cwd=project), 2)
        for key, args in commands.items()
    }

    assert lines["experimental"] == (
        "error: model 'churn' v3 is experimental, and only a candidate can be deployed; "
        "promote it first: `conveyor promote churn 3 --to candidate`"
    )
    for weights in ("5,25", "50,25,100", "0,100"):
        assert lines[weights] == (
            f"error: canary steps '{weights}' must be increasing percentages from 1 to 100, "
            "ending with 100; e.g. `--canary 5,25,50,100` (100 is the promotion)"
        )
    assert lines["x"] == (
        "error: canary steps 'x' are not whole percentages; give increasing percentages "
        "ending with 100, e.g. `--canary 5,25,50,100`"
    )
    assert lines["both"] == (
        "error: --canary, --shadow and --blue-green are different strategies; choose one of them"
    )
    assert lines["local"].startswith(
        "error: the metadata store is a SQLite file on this machine, out of the cluster's reach; "
    )
    assert "postgresql://" in lines["local"]
    assert "s3://" in lines["local"]
    assert not (project / "k8s").exists()
    assert lines["no_image"] == (
        "error: --emit k8s needs the container image that runs Conveyor; "
        "e.g. `--image registry.example.com/conveyor:1.0`"
    )

    _set_rollout_block(project, "rollout: {intervl_s: 5}")
    misspelt = conveyor("deploy", "churn", "2", cwd=project)
    line = _error_line(misspelt, 2)
    assert re.match(
        r"error: policies\.yaml:\d+ \(rollout\): unknown rollout key 'intervl_s'; the keys are: "
        r"interval_s, ",
        line,
    ), line
    where = int(line.split(":")[2].split()[0])
    assert (project / "policies.yaml").read_text().splitlines()[where - 1].startswith("rollout:")

    # None of the refusals started anything.
    assert _ok(conveyor("rollout", "status", "churn", cwd=project)).out.strip() == (
        "no rollout in progress"
    )
    assert _rollout_actions(project) == []


def test_a_canary_needs_a_production_version_to_compare_with(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "no_production", tmp_path)
    first = conveyor("deploy", "churn", "1", "--canary", "10,100", cwd=project)
    assert _error_line(first, 2) == (
        "error: model 'churn' has no production version to compare a canary with; promote the "
        "first version directly: `conveyor promote churn 1 --to production`"
    )


def test_a_detached_rollout_is_paused_resumed_and_aborted_by_hand(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)

    started = conveyor(
        "deploy",
        "churn",
        "2",
        "--canary",
        "10,50,100",
        "--detach",
        "--json",
        "--reason",
        "tuned trees",
        cwd=project,
        env=AUTHOR,
    )
    body = json.loads(_ok(started).out)
    assert body["model"] == "churn"
    assert body["candidate_version"] == 2
    assert body["stable_version"] == 1
    assert body["strategy"] == "canary"
    assert body["steps"] == [10, 50, 100]
    assert body["phase"] == "progressing"
    assert body["current_step"] == 10
    assert body["analyses"] == []
    assert body["reason"] == "tuned trees"
    # The example policy's rollout: block, as the rollout will be analysed.
    assert body["settings"]["interval_s"] == 2.0
    assert body["settings"]["min_requests"] == 150
    assert body["settings"]["failure_limit"] == 2
    assert body["settings"]["max_latency_increase"] == 0.5
    rollout_id = body["id"]

    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert [(r["id"], r["phase"], r["candidate_version"]) for r in status] == [
        (rollout_id, "progressing", 2)
    ]

    paused = _ok(
        conveyor("rollout", "pause", "churn", "--reason", "lunch", cwd=project, env=OPERATOR)
    )
    assert paused.out.strip() == f"rollout {rollout_id} of churn v2 paused at 10%"
    shown = _ok(conveyor("rollout", "status", "churn", cwd=project)).out.strip()
    assert shown == (
        f"rollout {rollout_id}: churn v2 vs v1 (canary, 10% -> 50% -> 100%) paused at 10%; "
        "not analysed yet"
    )
    again = conveyor("rollout", "pause", "churn", cwd=project, env=OPERATOR)
    assert _error_line(again, 2) == (
        "error: the rollout of 'churn' v2 is paused already; resume it with "
        "`conveyor rollout resume churn`"
    )

    resumed = _ok(conveyor("rollout", "resume", "churn", cwd=project, env=OPERATOR))
    assert resumed.out.strip() == (
        f"rollout {rollout_id} of churn v2 resumed at 10%; `conveyor rollout run churn` drives it"
    )
    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert status[0]["phase"] == "progressing"

    aborted = _ok(
        conveyor("rollout", "abort", "churn", "--reason", "test", cwd=project, env=OPERATOR)
    )
    assert aborted.out.startswith(
        f"rollout {rollout_id} of churn v2 aborted; all traffic on v1; incident "
    )
    found = INCIDENT.search(aborted.out)
    assert found is not None, aborted.out
    incident = found.group(1)

    # No rollout in progress: status shows the latest one, aborted, with why.
    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert [(r["id"], r["phase"]) for r in status] == [(rollout_id, "aborted")]
    assert status[0]["reason"] == "aborted by olga-operator: test"
    assert status[0]["ended_at"] is not None
    shown = _ok(conveyor("rollout", "status", "churn", cwd=project)).out.strip()
    assert shown.endswith("aborted at 10%; not analysed yet; aborted by olga-operator: test")
    over = conveyor("rollout", "resume", "churn", cwd=project, env=OPERATOR)
    assert _error_line(over, 2) == (
        "error: model 'churn' has no rollout in progress; start one with "
        "`conveyor deploy churn <version> --canary 5,25,50,100`"
    )

    verify = _ok(conveyor("audit", "verify", cwd=project))
    assert "audit trail intact" in verify.out
    events = _rollout_actions(project)
    assert [(e["action"], e["actor"]) for e in events] == [
        ("rollout.started", "sam-scientist"),
        ("rollout.paused", "olga-operator"),
        ("rollout.resumed", "olga-operator"),
        ("rollout.aborted", "olga-operator"),
    ]
    payloads = [e["payload"] for e in events]
    assert all(p["rollout"] == rollout_id for p in payloads)
    assert payloads[1]["reason"] == "lunch"
    assert payloads[3]["incident"] == incident


def test_a_driven_canary_without_traffic_fails_back_to_stable(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)
    _set_rollout_block(project, "rollout: {interval_s: 0.2, max_inconclusive: 2}")

    driven = conveyor(
        "deploy", "churn", "2", "--canary", "50,100", "--every", "0.05", cwd=project, env=AUTHOR
    )
    assert driven.code == 1, (driven.out, driven.err)
    assert "Traceback" not in driven.err
    lines = driven.out.strip().splitlines()
    assert re.fullmatch(r"rollout \d+: churn v2 against production v1, steps 50% -> 100%", lines[0])
    assert lines[1:4] == ["[50%] analysis: inconclusive; 0 candidate / 0 stable requests"] * 3
    assert lines[4].startswith(
        "rollout failed, traffic back on stable: analysis 3 inconclusive: 3 inconclusive "
        "analyses (max_inconclusive 2) (incident "
    )
    assert len(lines) == 5
    found = INCIDENT.search(lines[4])
    assert found is not None, lines[4]

    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert len(status) == 1
    assert status[0]["phase"] == "failed"
    assert status[0]["settings"]["interval_s"] == 0.2
    assert status[0]["settings"]["max_inconclusive"] == 2
    assert (
        status[0]["reason"]
        == "analysis 3 inconclusive: 3 inconclusive analyses (max_inconclusive 2)"
    )
    failed = [e for e in _rollout_actions(project) if e["action"] == "rollout.failed"]
    assert len(failed) == 1
    assert failed[0]["payload"]["incident"] == found.group(1)
    assert _ok(conveyor("rollout", "run", "churn", cwd=project)).out.strip() == (
        "model 'churn' has no rollout in progress"
    )


def test_watch_with_json_is_a_one_line_usage_error(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)
    line = _error_line(conveyor("rollout", "run", "churn", "--watch", "--json", cwd=project), 2)
    assert "--json prints one final outcome, and --watch has none" in line


def test_the_watching_controller_drives_each_rollout_as_it_starts(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    """`rollout run --watch`, the controller as a service: idle, then a rollout started by
    someone else is driven to its end, then idle again, until SIGTERM (exit 0)."""
    project = _copy(snapshots, "one_candidate", tmp_path)
    _set_rollout_block(project, "rollout: {interval_s: 0.2, max_inconclusive: 2}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(OPERATOR)
    argv = [sys.executable, "-m", "conveyor", "rollout", "run", "churn", "--watch"]
    with subprocess.Popen(
        [*argv, "--every", "0.05"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as controller:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line.rstrip("\n")) for line in controller.stdout or []],
            daemon=True,
        )
        reader.start()
        try:
            idle = "model 'churn' has no rollout in progress"
            assert lines.get(timeout=60) == idle  # once, not once per tick
            deploy = ("deploy", "churn", "2", "--canary", "50,100", "--detach")
            _ok(conveyor(*deploy, cwd=project, env=AUTHOR))
            seen = []
            while not seen or seen[-1] != idle:
                seen.append(lines.get(timeout=60))
            assert seen[:3] == ["[50%] analysis: inconclusive; 0 candidate / 0 stable requests"] * 3
            assert seen[3].startswith("rollout failed, traffic back on stable: analysis 3 ")
            assert len(seen) == 5
            controller.send_signal(signal.SIGTERM)
            assert controller.wait(timeout=60) == 0
        finally:
            if controller.poll() is None:
                controller.kill()
        reader.join(timeout=10)
        err = controller.stderr.read() if controller.stderr else ""
    assert lines.get_nowait() == "rollout controller for churn stopped"
    assert lines.empty()
    assert "Traceback" not in err, err
    phases = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert [r["phase"] for r in phases] == ["failed"]


def test_a_second_candidate_supersedes_the_rollout_in_progress(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "two_candidates", tmp_path)
    first = _ok(conveyor("deploy", "churn", "2", "--detach", cwd=project, env=AUTHOR))
    assert re.fullmatch(
        r"rollout \d+: churn v2 against production v1, steps 10% -> 50% -> 100%",
        first.out.strip(),
    )
    second = _ok(
        conveyor("deploy", "churn", "3", "--canary", "5,100", "--detach", cwd=project, env=AUTHOR)
    )
    lines = second.out.strip().splitlines()
    assert lines[0] == (
        "the rollout of v2 is superseded; its analysis starts again for the new version"
    )
    assert re.fullmatch(r"rollout \d+: churn v3 against production v1, steps 5% -> 100%", lines[1])

    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert [(r["candidate_version"], r["phase"], r["steps"]) for r in status] == [
        (3, "progressing", [5, 100])
    ]
    actions = [e["action"] for e in _rollout_actions(project)]
    assert actions == ["rollout.started", "rollout.superseded", "rollout.started"]


def test_the_json_of_a_failed_rollout_says_it_failed(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)
    _set_rollout_block(project, "rollout: {interval_s: 0.2, max_inconclusive: 0}")

    driven = conveyor(
        "deploy", "churn", "2", "--canary", "50,100", "--every", "0.05", "--json", cwd=project
    )
    assert driven.code == 1, (driven.out, driven.err)
    body = json.loads(driven.out)
    assert body["action"] == "failed"
    assert (
        body["message"] == "analysis 1 inconclusive: 1 inconclusive analyses (max_inconclusive 0)"
    )
    assert INCIDENT.fullmatch(f"incident {body['incident']['id']}")
    assert body["rollout"]["phase"] == "failed"
    assert body["rollout"]["ended_at"] is not None
    status = json.loads(_ok(conveyor("rollout", "status", "churn", "--json", cwd=project)).out)
    assert [a["verdict"] for a in status[0]["analyses"]] == ["inconclusive"]


def test_a_negative_tick_interval_is_refused_before_anything_starts(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    project = _copy(snapshots, "one_candidate", tmp_path)
    refused = conveyor("deploy", "churn", "2", "--every", "-1", cwd=project)
    assert refused.code == 2, (refused.out, refused.err)
    assert "Traceback" not in refused.err
    assert "--every" in refused.err
    assert _ok(conveyor("rollout", "status", "churn", cwd=project)).out.strip() == (
        "no rollout in progress"
    )
