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
import sys

from conveyor.core.digest import digest_json

__all__ = ["env_digest", "installed_distributions"]

_METADATA_SUFFIXES = (".dist-info", ".egg-info")


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


@functools.cache
def env_digest() -> str:
    """A digest of the interpreter, the platform and the installed distributions.

    Computed once per process: distributions do not change under a running pipeline.
    """
    return digest_json(
        {
            "python": sys.version,
            "implementation": sys.implementation.cache_tag,
            "platform": sys.platform,
            "machine": platform.machine(),
            "distributions": installed_distributions(),
        }
    )
