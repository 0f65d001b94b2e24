"""The public surface of conveyor.data: sorted, complete, importable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import conveyor.data


def test_all_is_sorted_and_every_name_resolves() -> None:
    names = conveyor.data.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(conveyor.data, name) is not None


def test_import_and_cli_help_do_not_load_pandas() -> None:
    code = (
        "import sys, conveyor.data, conveyor.cli.data; "
        "from conveyor.cli import main; main(['data', '--help']); "
        "assert 'pandas' not in sys.modules and 'scipy' not in sys.modules, 'heavy import'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("validate", "drift", "profile"):
        assert command in done.stdout
