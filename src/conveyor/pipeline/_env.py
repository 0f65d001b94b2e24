"""The environment digest: Python, platform and installed distributions, in every cache key.

Reading the installed distributions through ``importlib.metadata`` costs ~100 ms here (40 ms to
import it, 60 ms to read 119 METADATA files), more than the whole budget of a no-op run. The
names of the ``*.dist-info`` / ``*.egg-info`` folders on ``sys.path`` already encode each
distribution's name and version, and listing them takes ~0.4 ms, so that is what we digest.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
from typing import Any

from conveyor.core.digest import digest_json

__all__ = ["distribution_pins", "env_digest", "environment_document", "installed_distributions"]

_METADATA_SUFFIXES = (".dist-info", ".egg-info")
_NORMALISE = re.compile(r"[-_.]+")


def installed_distributions() -> list[str]:
    """The sorted ``name-version.dist-info`` folder names of everything importable."""
    cwd = os.getcwd()
    names: set[str] = set()
    for entry in sys.path:
        # The working directory is on sys.path under `python -m`; it is not an install location
        # and must not make the digest depend on where the command was started.
        if not entry or os.path.abspath(entry) == cwd:
            continue
        try:
            with os.scandir(entry) as it:
                names.update(e.name for e in it if e.name.endswith(_METADATA_SUFFIXES))
        except OSError:
            continue  # zip files and missing folders on sys.path
    return sorted(names)


def _described() -> dict[str, Any]:
    return {
        "python": sys.version,
        "implementation": sys.implementation.cache_tag,
        "platform": sys.platform,
        "machine": platform.machine(),
        "distributions": installed_distributions(),
    }


@functools.cache
def env_digest() -> str:
    """A digest of the interpreter, the platform and the installed distributions.

    Computed once per process: distributions do not change under a running pipeline.
    """
    return digest_json(_described())


def distribution_pins(folders: list[str]) -> list[str]:
    """``name==version`` of each ``*.dist-info`` / ``*.egg-info`` folder name, sorted.

    Names are normalised as PEP 503 does (``Foo_Bar`` and ``foo-bar`` are one project); an
    egg-info folder without a version (a development install) gives ``name==``.
    """
    pins: set[str] = set()
    for folder in folders:
        stem = folder.rsplit(".", 1)[0]
        # A dist-info name escapes "-" in the project name as "_", so the first "-" ends it;
        # an egg-info name may carry a third part, the Python tag ("-py3.11").
        name, _, rest = stem.partition("-")
        version = rest.split("-", 1)[0]
        pins.add(f"{_NORMALISE.sub('-', name).lower()}=={version}")
    return sorted(pins)


def environment_document() -> dict[str, Any]:
    """What a rebuild compares: the inputs of :func:`env_digest`, readable.

    Read afresh on each call (~0.5 ms), unlike the digest: a rebuild compares the environment
    of this moment with the recorded one.

    ``env_digest`` is the digest of the same interpreter, platform and folder list, so two
    documents with the same ``env_digest`` describe the same environment; the folder names
    are given here as ``name==version`` pins.
    """
    described = _described()
    return {
        "env_digest": digest_json(described),
        "python": sys.version.split()[0],
        "python_build": described["python"],
        "implementation": described["implementation"],
        "platform": described["platform"],
        "machine": described["machine"],
        "distributions": distribution_pins(described["distributions"]),
    }
