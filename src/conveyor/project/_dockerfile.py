"""``conveyor package MODEL VERSION --dockerfile``: a reproducible image definition for serving.

The output folder holds a ``Dockerfile``, the bundle's files under ``bundle/`` (verified against
their digests on the way out) and the ``conveyor.yaml`` the container reads. Everything in it
is a function of the bundle alone, so the same version always gives byte-identical files:
no timestamps, no host paths, files in sorted order.

The image is built the way the bundle was locked:

- the base image is pinned: ``python:<the bundle's exact Python>-slim-bookworm`` by default,
  or any reference given with ``base_image`` (a ``@sha256:`` digest pins it fully);
- the bundle's ``env/requirements.txt`` (exact versions) is installed with Conveyor's own
  exact version, before the rest is copied, so the dependency layer is cached across models;
- the server runs as an unprivileged user (uid 10001), never root;
- ``HEALTHCHECK`` asks ``/v2/health/ready``, which answers 200 once every served model loaded;
- the entry point is ``conveyor serve`` for exactly this model version, on port 8080.

The container serves the version from the stores named by ``CONVEYOR_STORE`` and
``CONVEYOR_ARTIFACTS`` at run time (the team's shared PostgreSQL and object store), where the
version is registered; the copy of the bundle in the image is what its dependency layer was
built from, and records which bytes the image was made for (``/opt/conveyor/bundle``, and the
``org.conveyor.bundle`` label).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.core.errors import IntegrityError, ValidationError

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.project._context import Project

__all__ = ["DockerContext", "render_dockerfile", "write_docker_context"]

PORT = 8080
_UID = 10001
_BUNDLE_DIR = "bundle"
_MANIFEST = "manifest.yaml"
_REQUIREMENTS = "env/requirements.txt"
_LOCKS_CONVEYOR = re.compile(r"^conveyor\s*==", re.IGNORECASE | re.MULTILINE)
# An exact version tag (major.minor.patch) or a digest: never a moving tag such as `latest`,
# `3` or `3.11-slim`, which names another image after the next release.
_PINNED = re.compile(
    r"[\w./-]+(?::[\w.-]*?\d+\.\d+\.\d+[\w.-]*(?:@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})"
)


@dataclass(frozen=True)
class DockerContext:
    """What :func:`write_docker_context` wrote.

    Attributes:
        folder: The build context.
        files: Every file written, relative to ``folder``, sorted.
        base_image: The pinned base image.
    """

    folder: Path
    files: tuple[str, ...]
    base_image: str


def write_docker_context(
    project: Project, model: str, version: int, out: Path, *, base_image: str | None = None
) -> DockerContext:
    """Write the Dockerfile and the bundle of ``model`` ``version`` into ``out``.

    Args:
        project: The open project holding the version.
        model: The model name.
        version: The version number.
        out: The build context folder; created if missing, its files replaced.
        base_image: The base image reference; default from the bundle's Python version.

    Returns:
        The folder, its files and the base image.

    Raises:
        NotFoundError: no such model or version, or a bundle file is missing from the store.
        IntegrityError: a stored file does not match its digest.
        ValidationError: ``base_image`` is not pinned to a version or a digest.
    """
    from conveyor import __version__
    from conveyor.core.atomic import atomic_write_bytes
    from conveyor.core.digest import digest_bytes
    from conveyor.packaging import Manifest
    from conveyor.registry import get_version

    mv = get_version(project.metadata, model, version)
    manifest_bytes = project.artifacts.get_bytes(mv.artifact_digest)
    manifest = Manifest.from_yaml(manifest_bytes, source=f"artifact {mv.artifact_digest}")
    files = {_MANIFEST: manifest_bytes}
    for path, ref in sorted(manifest.files.items()):
        data = project.artifacts.get_bytes(ref.digest)
        if digest_bytes(data) != ref.digest:
            raise IntegrityError(
                f"file {path} of model '{model}' version {version} does not match its digest",
                hint="the artifact store is corrupt; restore it from a backup",
            )
        files[path] = data
    image = base_image or f"python:{manifest.env.python}-slim-bookworm"
    if not _PINNED.fullmatch(image):
        raise ValidationError(
            f"base image '{image}' is not pinned to an exact version or a digest",
            hint="use e.g. python:3.11.7-slim-bookworm or python@sha256:<digest>",
        )
    dockerfile = render_dockerfile(
        model=model,
        version=version,
        bundle_digest=mv.artifact_digest,
        base_image=image,
        conveyor_version=__version__,
        requirements=files[_REQUIREMENTS].decode() if _REQUIREMENTS in files else None,
    )
    written = {
        "Dockerfile": dockerfile.encode(),
        "conveyor.yaml": _container_config(model).encode(),
        ".dockerignore": b"*\n!Dockerfile\n!conveyor.yaml\n!bundle/\n",
    }
    written.update({f"{_BUNDLE_DIR}/{path}": data for path, data in files.items()})
    for rel, data in sorted(written.items()):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return DockerContext(out, tuple(sorted(written)), image)


def _container_config(model: str) -> str:
    return (
        "# The container's project: stores come from CONVEYOR_STORE and CONVEYOR_ARTIFACTS.\n"
        f"project: {json.dumps(model)}\n"
        "serve:\n"
        "  host: 0.0.0.0\n"
        f"  port: {PORT}\n"
    )


def render_dockerfile(
    *,
    model: str,
    version: int,
    bundle_digest: str,
    base_image: str,
    conveyor_version: str,
    requirements: str | None = None,
) -> str:
    """The Dockerfile text; a pure function of its arguments.

    ``requirements`` is the bundle's ``env/requirements.txt``; Conveyor's exact version is
    added to the install unless the lock names Conveyor already."""
    # The slim base has no curl; Python is there. Any error (refused, 503) is unhealthy.
    health = (
        "import sys, urllib.request\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:{PORT}/v2/health/ready', timeout=2)\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
        "sys.exit(0 if r.status == 200 else 1)"
    )
    entry = [
        "conveyor",
        "serve",
        "--host",
        "0.0.0.0",  # noqa: S104 - a container listens on all of its interfaces
        "--port",
        str(PORT),
        "--model",
        model,
        "--version",
        str(version),
    ]
    locked = f"/opt/conveyor/{_BUNDLE_DIR}/{_REQUIREMENTS}"
    conveyor = (
        ""
        if requirements is not None and _LOCKS_CONVEYOR.search(requirements)
        else f' "conveyor=={conveyor_version}"'
    )
    install = (
        f"COPY {_BUNDLE_DIR}/{_REQUIREMENTS} {locked}\nRUN python -m pip install -r {locked}"
        + conveyor
        if requirements is not None
        else "RUN python -m pip install" + conveyor
    )
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# Serves model {model} version {version} (bundle {bundle_digest}).",
        f"# Written by `conveyor package {model} {version} --dockerfile`: the same bundle always",
        "# gives these same bytes. Run it with CONVEYOR_STORE and CONVEYOR_ARTIFACTS pointing at",
        "# the stores where the version is registered.",
        f"FROM {base_image}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 CONVEYOR_PROJECT_DIR=/srv/conveyor",
        f'LABEL org.opencontainers.image.title="{model}" \\',
        f'      org.conveyor.model="{model}" org.conveyor.version="{version}" \\',
        f'      org.conveyor.bundle="{bundle_digest}"',
        f"RUN groupadd --system --gid {_UID} conveyor \\",
        f"    && useradd --system --uid {_UID} --gid conveyor --home-dir /srv/conveyor \\",
        "       --create-home --shell /usr/sbin/nologin conveyor",
        install,
        f"COPY {_BUNDLE_DIR}/ /opt/conveyor/{_BUNDLE_DIR}/",
        f"COPY --chown={_UID}:{_UID} conveyor.yaml /srv/conveyor/conveyor.yaml",
        "WORKDIR /srv/conveyor",
        f"USER {_UID}:{_UID}",
        f"EXPOSE {PORT}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\",
        f"  CMD {json.dumps(['python', '-c', health])}",
        f"ENTRYPOINT {json.dumps(entry)}",
    ]
    return "\n".join(lines) + "\n"
