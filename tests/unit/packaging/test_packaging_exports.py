"""The public surface of conveyor.packaging, and that importing it stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import conveyor.packaging as packaging


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert packaging.__all__ == sorted(packaging.__all__)
    for name in packaging.__all__:
        assert getattr(packaging, name) is not None


def test_importing_model_does_not_import_heavy_libraries() -> None:
    code = (
        "import json, sys\n"
        "from conveyor import Model\n"
        "import conveyor.packaging\n"
        "heavy = ['numpy', 'pandas', 'pyarrow', 'sklearn', 'skops', 'scipy', 'yaml']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(out.stdout) == []
