"""``conveyor package --dockerfile``: byte-identical output and a well-formed, safe Dockerfile.

No image is built (there is no registry to pull the base from); the Dockerfile's instructions
are parsed and checked one by one instead.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.core.config import load_config
from conveyor.core.digest import digest_bytes
from conveyor.core.errors import IntegrityError, NotFoundError, ValidationError
from conveyor.packaging import Manifest, Model, build_bundle
from conveyor.project import Project, open_project
from conveyor.project._dockerfile import render_dockerfile, write_docker_context
from conveyor.registry import get_version, register_version

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "conveyor.yaml").write_text("project: demo\n")
    with open_project(root) as opened:
        x = pd.DataFrame({"a": np.linspace(0.0, 1.0, 40), "b": np.tile([0.0, 1.0], 20)})
        y = (x["a"] > 0.5).astype(int).to_numpy()
        estimator = LogisticRegression().fit(x, y)
        bundle = build_bundle(
            opened.artifacts,
            Model(estimator=estimator, input_example=x.head(3)),
            name="demo",
            metrics={},
        )
        register_version(
            opened.metadata,
            model="demo",
            artifact_digest=bundle.digest,
            metrics={},
            actor="t",
            run_id=None,
        )
        yield opened


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "a continuation line runs off the end"
    return out


def test_same_version_gives_byte_identical_output(project: Project, tmp_path: Path) -> None:
    first = write_docker_context(project, "demo", 1, tmp_path / "a")
    second = write_docker_context(project, "demo", 1, tmp_path / "b")

    assert first.files == second.files
    for rel in first.files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_bundle_files_are_copied_verified(project: Project, tmp_path: Path) -> None:
    written = write_docker_context(project, "demo", 1, tmp_path / "ctx")

    assert {"Dockerfile", "conveyor.yaml", ".dockerignore"} <= set(written.files)
    manifest = (tmp_path / "ctx" / "bundle" / "manifest.yaml").read_bytes()
    assert digest_bytes(manifest) == get_version(project.metadata, "demo", 1).artifact_digest
    assert (tmp_path / "ctx" / "bundle" / "env" / "requirements.txt").is_file()
    # The container's configuration is a valid project configuration.
    config = load_config(tmp_path / "ctx")
    assert (config.project, config.serve.host, config.serve.port) == ("demo", "0.0.0.0", 8080)


def test_dockerfile_structure(project: Project, tmp_path: Path) -> None:
    written = write_docker_context(project, "demo", 1, tmp_path / "ctx")
    text = (tmp_path / "ctx" / "Dockerfile").read_text()
    steps = _instructions(text)
    keywords = [k for k, _ in steps]

    allowed = {"FROM", "ENV", "LABEL", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE"}
    assert set(keywords) <= allowed | {"HEALTHCHECK", "ENTRYPOINT"}
    assert keywords[0] == "FROM"
    base = steps[0][1]
    assert base == written.base_image
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm", base)  # an exact patch version
    # The locked requirements are installed, from the copied lock.
    copies = [a.split() for k, a in steps if k == "COPY"]
    assert ["bundle/env/requirements.txt", "/opt/conveyor/bundle/env/requirements.txt"] in copies
    runs = [a for k, a in steps if k == "RUN"]
    assert any("pip install -r /opt/conveyor/bundle/env/requirements.txt" in r for r in runs)
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        assert all((tmp_path / "ctx" / s).exists() for s in sources), parts
    # Non-root from USER on, through the entry point.
    user = keywords.index("USER")
    assert steps[user][1].split(":")[0] not in {"0", "root"}
    assert keywords.index("ENTRYPOINT") > user
    assert keywords.count("USER") == 1
    # The health check probes readiness; the entry point is `conveyor serve` of this version.
    [health] = [a for k, a in steps if k == "HEALTHCHECK"]
    options, _, command = health.partition("CMD ")
    assert "--interval=" in options
    probe = json.loads(command)
    assert probe[:2] == ["python", "-c"]
    assert "/v2/health/ready" in probe[2]
    compile(probe[2], "<healthcheck>", "exec")  # the probe is valid Python
    [entry] = [a for k, a in steps if k == "ENTRYPOINT"]
    argv = json.loads(entry)
    assert argv[:2] == ["conveyor", "serve"]
    assert argv[argv.index("--model") + 1] == "demo"
    assert argv[argv.index("--version") + 1] == "1"
    assert ("EXPOSE", argv[argv.index("--port") + 1]) in steps


def test_conveyor_is_added_only_when_the_lock_lacks_it() -> None:
    def render(requirements: str) -> str:
        return render_dockerfile(
            model="m",
            version=2,
            bundle_digest="blake3:" + "0" * 64,
            base_image="python:3.11.7-slim-bookworm",
            conveyor_version="0.1.0",
            requirements=requirements,
        )

    with_lock = render("conveyor==0.1.0\nnumpy==2.0.0\n")
    without = render("numpy==2.0.0\n")

    assert '"conveyor==0.1.0"' not in with_lock
    assert 'requirements.txt "conveyor==0.1.0"' in without


@pytest.mark.parametrize(
    "image", ["python", "python:latest", "python:3", "python:3.11-slim", "python:3.11"]
)
def test_a_moving_base_image_is_refused(project: Project, tmp_path: Path, image: str) -> None:
    with pytest.raises(ValidationError, match="not pinned"):
        write_docker_context(project, "demo", 1, tmp_path / "ctx", base_image=image)


def test_a_pinned_base_image_is_used(project: Project, tmp_path: Path) -> None:
    image = "registry.example/python@sha256:" + "a" * 64

    written = write_docker_context(project, "demo", 1, tmp_path / "ctx", base_image=image)

    assert (tmp_path / "ctx" / "Dockerfile").read_text().count(f"FROM {image}\n") == 1
    assert written.base_image == image


def test_unknown_version_and_corrupt_bytes_are_refused(project: Project, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        write_docker_context(project, "demo", 9, tmp_path / "ctx")
    manifest = project.artifacts.get_bytes(get_version(project.metadata, "demo", 1).artifact_digest)
    ref = Manifest.from_yaml(manifest, source="t").files["model/model.skops"]
    path = project.artifacts.location(ref.digest)
    with open(path, "r+b") as fh:
        fh.write(b"XX")
    with pytest.raises(IntegrityError):
        write_docker_context(project, "demo", 1, tmp_path / "ctx2")
