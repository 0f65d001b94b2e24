"""The code digest: which edits change a step's digest, and which do not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from conveyor.pipeline import load_pipeline
from conveyor.pipeline._codedigest import CodeDigester
from conveyor.pipeline._locality import ProjectFiles

if TYPE_CHECKING:
    from pathlib import Path

BASE = {
    "app/__init__.py": "",
    "app/consts.py": """
        THRESHOLD = 0.5
        COLUMNS = ("a", "b")
    """,
    "app/models.py": """
        class Scaler:
            def __init__(self, k):
                self.k = k

            def apply(self, x):
                return x * self.k
    """,
    "app/state.py": """
        from app.models import Scaler

        SCALER = Scaler(3)
    """,
    "app/lazy.py": """
        def helper():
            return "lazy"
    """,
    "app/cached.py": """
        import functools


        @functools.lru_cache
        def lookup(key):
            return key.upper()


        def unrelated():
            return 0
    """,
    "app/other.py": """
        def unused():
            return 0
    """,
    "app/pipe.py": """
        import logging
        import math

        import app.consts
        from app.cached import lookup
        from app.consts import COLUMNS
        from app.models import Scaler
        from app.state import SCALER
        from conveyor import Pipeline, step

        logger = logging.getLogger(__name__)
        LOCAL = Scaler(5)
        LIMIT = 10


        @step
        def uses_constant():
            logger.info("running")
            return [COLUMNS, LIMIT, math.sqrt(4)]


        @step
        def uses_module_attr():
            return app.consts.THRESHOLD


        @step
        def uses_instance():
            return SCALER.apply(2)


        @step
        def uses_local_instance():
            return LOCAL.apply(2)


        @step
        def uses_cached_helper():
            return lookup("x")


        @step
        def imports_inside():
            from app.lazy import helper

            return helper()


        @step
        def plain():
            return 1


        pipeline = Pipeline(
            [
                uses_constant,
                uses_module_attr,
                uses_instance,
                uses_local_instance,
                uses_cached_helper,
                imports_inside,
                plain,
            ],
            name="cd",
        )
    """,
}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def _digests(root: Path) -> dict[str, str]:
    pipeline = load_pipeline("app.pipe:pipeline", root)
    digester = CodeDigester(ProjectFiles(root))
    return {s.name: digester.digest(s) for s in pipeline.steps}


def _changed(root: Path, rel: str, old: str, new: str) -> set[str]:
    before = _digests(root)
    path = root / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    after = _digests(root)
    return {name for name in before if before[name] != after[name]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _write(tmp_path, BASE)
    return tmp_path


def test_digests_are_stable_and_distinct(root: Path) -> None:
    first = _digests(root)
    assert _digests(root) == first
    assert len(set(first.values())) == len(first)


def test_digests_are_the_same_in_another_process(root: Path) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from conveyor.pipeline import load_pipeline\n"
        "from conveyor.pipeline._codedigest import CodeDigester\n"
        "from conveyor.pipeline._locality import ProjectFiles\n"
        "root = Path(sys.argv[1])\n"
        "p = load_pipeline('app.pipe:pipeline', root)\n"
        "d = CodeDigester(ProjectFiles(root))\n"
        "print(json.dumps({s.name: d.digest(s) for s in p.steps}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, check=True
    )
    import json

    assert json.loads(out.stdout) == _digests(root)


@pytest.mark.parametrize(
    ("rel", "old", "new", "expected"),
    [
        # A constant imported from another module: its value is in the digest.
        (
            "app/consts.py",
            '("a", "b")',
            '("a", "c")',
            {"uses_constant", "uses_module_attr", "uses_local_instance"},
        ),
        # A module used through an attribute chain: its whole file, comments included.
        (
            "app/consts.py",
            "THRESHOLD = 0.5",
            "THRESHOLD = 0.5  # why",
            {"uses_module_attr", "uses_local_instance"},
        ),
        # An object built at import time from a project class: the class's module, and the
        # module that built it (here, imported from app.state) with whatever it imports.
        (
            "app/models.py",
            "return x * self.k",
            "return x * self.k + 1",
            {"uses_instance", "uses_local_instance"},
        ),
        (
            "app/state.py",
            "SCALER = Scaler(3)",
            "SCALER = Scaler(4)",
            {"uses_instance", "uses_local_instance"},
        ),
        # Built in the step's own module, that whole module (and what it imports) stands in
        # for the object's value: the price of not reading values we cannot see into.
        ("app/pipe.py", "LOCAL = Scaler(5)", "LOCAL = Scaler(6)", {"uses_local_instance"}),
        (
            "app/pipe.py",
            "def plain():\n    return 1",
            "def plain():\n    return 2",
            {"plain", "uses_local_instance"},
        ),
        # A constant in the step's own module.
        ("app/pipe.py", "LIMIT = 10", "LIMIT = 11", {"uses_constant", "uses_local_instance"}),
        # A module imported inside the function body, not yet imported when the key is made.
        (
            "app/lazy.py",
            'return "lazy"',
            'return "eager"',
            {"imports_inside", "uses_local_instance"},
        ),
        # A decorated helper (functools.lru_cache): the function it wraps, not its whole module.
        (
            "app/cached.py",
            "return key.upper()",
            "return key.lower()",
            {"uses_cached_helper", "uses_local_instance"},
        ),
        ("app/cached.py", "return 0", "return 1", {"uses_local_instance"}),
        # Code nothing imports changes nothing.
        ("app/other.py", "return 0", "return 1", set()),
    ],
)
def test_what_an_edit_changes(root: Path, rel: str, old: str, new: str, expected: set[str]) -> None:
    assert _changed(root, rel, old, new) == expected


def test_library_code_is_not_followed(root: Path) -> None:
    # math, logging and conveyor itself are outside the root: covered by the environment.
    from conveyor.pipeline._codedigest import _Walk

    pipeline = load_pipeline("app.pipe:pipeline", root)
    walk = _Walk(ProjectFiles(root))
    walk.function(pipeline.steps[0].fn, always=True)
    files = {key for key in walk.parts if key.startswith("file:")}
    assert files == set()  # uses_constant reaches only values, no project files
    assert "value:app.pipe.logger" in walk.parts
    assert "value:app.pipe.COLUMNS" in walk.parts


def test_a_virtual_environment_inside_the_root_is_not_project_code(tmp_path: Path) -> None:
    files = ProjectFiles(tmp_path)
    inside = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "lib.py"
    inside.parent.mkdir(parents=True)
    inside.write_text("")
    own = tmp_path / "pkg" / "mod.py"
    own.parent.mkdir()
    own.write_text("")
    assert files.relative(str(inside)) is None
    assert files.relative(str(own)) == "pkg/mod.py"
    assert files.relative("<string>") is None
    assert files.relative(str(tmp_path.parent / "elsewhere.py")) is None
