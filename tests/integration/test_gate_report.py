"""The gate report (issue 4): every check with its numbers and verdict, the reliability curve
and per-group fairness drawn from the stored evaluation, as markdown, HTML and through the CLI.

One project is built per module: real models evaluated and promoted through a policy with an
ECE bound, a fairness bound, a worst-slice bound, a comparison with production at 95%
confidence and a required approval; the reports are then read back from the store.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.integration import _gates_support as support

from conveyor.cli._main import main
from conveyor.core.errors import ApprovalPendingError, CheckFailedError
from conveyor.project import (
    gate_report,
    open_project,
    promote,
    render_html,
    render_markdown,
    review,
)
from conveyor.registry import gate_results, list_evaluations

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.project import Project

POLICY = """\
evaluation:
  data: data/eval.csv
  target: churned
  slices: [contract]
  sensitive: [gender]
  bootstrap: 200
stages:
  candidate:
    checks:
      - roc_auc >= 0.6
      - expected_calibration_error <= 0.05
      - fairness.demographic_parity_difference <= 0.1
      - slice.contract.roc_auc >= 0.5
  production:
    checks:
      - roc_auc >= production.roc_auc - 0.02 with 95% confidence
    approvals: {count: 1}
"""
COMMENT = "checked the <b>fairness</b> table | ok & done"


@dataclass
class Built:
    project: Project
    root: Path
    overrides: dict[str, str]
    strong: int
    biased: int


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("report")
    root = support.write_project(tmp / "proj", POLICY)
    overrides = {"store": f"sqlite:///{tmp / 'metadata.db'}", "artifacts": str(tmp / "artifacts")}
    project = open_project(root, overrides=overrides)
    twin = support.register(project, "twin").version
    promote(project, model="churn", version=twin, to="candidate", actor="lead")
    review(
        project, model="churn", version=twin, stage="production", decision="approve", actor="ann"
    )
    promote(project, model="churn", version=twin, to="production", actor="lead")
    strong = support.register(project, "strong").version
    promote(project, model="churn", version=strong, to="candidate", actor="lead")
    with pytest.raises(ApprovalPendingError):
        promote(project, model="churn", version=strong, to="production", actor="lead")
    review(
        project,
        model="churn",
        version=strong,
        stage="production",
        decision="approve",
        actor="ann",
        comment=COMMENT,
    )
    promote(project, model="churn", version=strong, to="production", actor="lead")
    biased = support.register(project, "biased").version
    with pytest.raises(CheckFailedError):
        promote(project, model="churn", version=biased, to="candidate", actor="lead")
    yield Built(project, root, overrides, strong, biased)
    project.close()


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def test_markdown_has_each_check_with_its_numbers_and_verdict(built: Built) -> None:
    report = gate_report(built.project, "churn", built.strong)
    md = render_markdown(report)
    results = gate_results(built.project.metadata, "churn", built.strong)
    # Candidate gate, production gate waiting for the review, production gate after it.
    assert [a.outcome for a in report.attempts] == ["passed", "waiting for review", "passed"]
    assert [len(a.results) for a in report.attempts] == [4, 2, 2]
    assert "### Attempt 1: to candidate at " in md
    assert ": WAITING FOR REVIEW\n" in md
    for r in results:
        observed = "-" if r.observed is None else f"{r.observed:.4g}"
        threshold = "-" if r.threshold is None else f"{r.threshold:.4g}"
        verdict = "pass" if r.passed else "FAIL"
        assert _row(r.check.replace("|", "\\|"), verdict, observed, threshold) in md
        assert r.detail in md
    # The comparison with production: its interval, from the stored evidence.
    cmp = [r for r in results if "confidence" in r.check][-1]
    assert cmp.passed
    assert cmp.evidence is not None
    assert f"95% CI [{cmp.evidence['ci_low']:+.4g}, {cmp.evidence['ci_high']:+.4g}] (delong" in md
    assert f"vs production v{cmp.evidence['production_version']} " in md
    assert "approvals: 1 required; approved by ann; rejected by nobody" in md
    # The review, its pipe escaped so the table keeps its columns.
    assert "| ann | - | approve | checked the <b>fairness</b> table \\| ok & done |" in md
    [evaluation] = list_evaluations(built.project.metadata, "churn", built.strong)
    assert f"dataset version `{evaluation.dataset_version}`" in md
    ece = evaluation.metrics["expected_calibration_error"]
    assert ece is not None
    assert _row("expected_calibration_error", f"{ece:.4g}") in md
    assert "### Fairness over gender" in md
    assert "### Slices by contract" in md


def test_a_held_version_shows_the_failing_check_with_its_numbers(built: Built) -> None:
    report = gate_report(built.project, "churn", built.biased)
    md = render_markdown(report)
    [attempt] = report.attempts
    assert attempt.outcome == "failed"
    [dp] = [r for r in attempt.results if r.check.startswith("fairness.")]
    assert not dp.passed
    assert dp.observed is not None
    assert dp.observed > 0.1
    assert _row(dp.check, "FAIL", f"{dp.observed:.4g}", "0.1", dp.detail) in md
    assert "FAILED (" in md
    assert "fairness over gender: demographic parity difference" in md


class _Page(HTMLParser):
    """Collects the charts' marks and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svgs: list[dict[str, str | None]] = []
        self.points: list[dict[str, str | None]] = []
        self.groups: dict[str, dict[str, list[dict[str, str | None]]]] = {}
        self._attribute: str | None = None
        self._group: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "svg":
            self.svgs.append(a)
            self._attribute = a.get("data-attribute")
        elif tag == "circle" and a.get("class") == "bin":
            self.points.append(a)
        elif tag == "g" and a.get("class") == "group" and self._attribute is not None:
            self._group = a["data-group"]
            assert self._group is not None
            self.groups.setdefault(self._attribute, {})[self._group] = []
        elif tag == "rect" and a.get("class") == "bar":
            assert self._attribute is not None
            assert self._group is not None
            self.groups[self._attribute][self._group].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._group = None
        elif tag == "svg":
            self._attribute = None


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def test_html_draws_the_stored_reliability_curve_and_fairness_per_group(built: Built) -> None:
    page_text = render_html(gate_report(built.project, "churn", built.strong))
    page = _parse(page_text)
    assert "script" not in page.tags
    assert not any(t in ("link", "img", "iframe") for t in page.tags)
    assert "src=" not in page_text
    assert "href=" not in page_text
    assert [s.get("class") for s in page.svgs] == ["reliability", "fairness"]

    [evaluation] = list_evaluations(built.project.metadata, "churn", built.strong)
    bins = [b for b in evaluation.report["calibration"]["bins"] if b["count"]]
    assert len(page.points) == len(bins)
    for point, b in zip(page.points, bins, strict=True):
        assert float(point["data-mean-predicted"] or "nan") == b["mean_predicted"]
        assert float(point["data-fraction-positive"] or "nan") == b["fraction_positive"]
        assert int(point["data-count"] or -1) == b["count"]

    # The points are scikit-learn's calibration curve of the stored predictions.
    from sklearn.calibration import calibration_curve

    assert evaluation.predictions_digest is not None
    scores = np.load(io.BytesIO(built.project.artifacts.get_bytes(evaluation.predictions_digest)))
    y = support.frames()[1][support.LABEL].to_numpy()
    frac, mean = calibration_curve(y, scores, n_bins=10, strategy="uniform")
    drawn = [
        (float(p["data-mean-predicted"] or 0), float(p["data-fraction-positive"] or 0))
        for p in page.points
    ]
    np.testing.assert_allclose([d[0] for d in drawn], mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose([d[1] for d in drawn], frac, rtol=0, atol=1e-9)

    groups = evaluation.report["fairness"]["gender"]["groups"]
    assert set(page.groups) == {"gender"}
    assert set(page.groups["gender"]) == set(groups)
    assert len(groups) >= 2
    for name, bars in page.groups["gender"].items():
        drawn_rates = {b["data-metric"]: float(b["data-value"] or "nan") for b in bars}
        expected = {k: groups[name][k] for k in ("selection_rate", "tpr", "fpr")}
        assert drawn_rates == {k: v for k, v in expected.items() if v is not None}

    # Text is escaped: the reviewer's markup is shown, never interpreted.
    assert "checked the &lt;b&gt;fairness&lt;/b&gt; table | ok &amp; done" in page_text
    assert "<b>fairness</b>" not in page_text


def _cli(built: Built, *args: str) -> list[str]:
    return [
        "-C",
        str(built.root),
        "--store",
        built.overrides["store"],
        "--artifacts",
        built.overrides["artifacts"],
        *args,
    ]


def test_cli_model_report_prints_markdown_and_writes_html(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(built, "model", "report", "churn", str(built.strong))) == 0
    out = capsys.readouterr().out
    assert out == render_markdown(gate_report(built.project, "churn", built.strong))

    target = tmp_path / "gates.html"
    assert main(_cli(built, "model", "report", "churn", "2", "--out", str(target))) == 0
    assert "written to" in capsys.readouterr().out
    page = _parse(target.read_text(encoding="utf-8"))
    assert [s.get("class") for s in page.svgs] == ["reliability", "fairness"]

    assert main(_cli(built, "model", "report", "churn", "2", "--format", "html")) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")

    assert main(_cli(built, "model", "report", "churn", "2", "--out", str(tmp_path / "r.txt"))) == 2
    assert "cannot tell the report format" in capsys.readouterr().err


def test_cli_unknown_version_is_one_line_and_exit_2(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("report", "show"):
        assert main(_cli(built, "model", command, "churn", "99")) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            "error: model 'churn' has no version 99 (latest is 3); see `conveyor model list churn`"
        ]


def test_cli_model_show_adds_evaluation_gates_and_reviews(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    v = built.strong
    assert main(_cli(built, "model", "show", "churn", str(v), "--json")) == 0
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    [evaluation] = list_evaluations(built.project.metadata, "churn", v)
    assert shown["evaluation"]["id"] == evaluation.id
    assert shown["evaluation"]["dataset_version"] == evaluation.dataset_version
    assert shown["evaluation"]["metrics"] == evaluation.metrics
    latest = {(g["stage"], g["check"]): g for g in shown["gates"]}
    assert len(latest) == len(shown["gates"]) == 6  # 4 candidate checks, 2 production
    assert latest[("production", "approvals >= 1")]["passed"] is True
    assert all(g["passed"] for g in shown["gates"])
    assert [(r["user"], r["decision"], r["comment"]) for r in shown["reviews"]] == [
        ("ann", "approve", COMMENT)
    ]
    assert shown["manifest"]["name"] == "churn"

    assert main(_cli(built, "model", "show", "churn", str(built.biased))) == 0
    out = capsys.readouterr().out
    assert f"churn v{built.biased}  stage experimental" in out
    assert "(every file verified)" in out
    [biased_eval] = list_evaluations(built.project.metadata, "churn", built.biased)
    assert f"evaluation {biased_eval.id} on dataset version {biased_eval.dataset_version}: " in out
    dp = biased_eval.metrics["fairness.demographic_parity_difference"]
    assert dp is not None
    assert (
        f"gate candidate: FAIL fairness.demographic_parity_difference <= 0.1: observed "
        f"{dp:.4g}, threshold 0.1; " in out
    )
