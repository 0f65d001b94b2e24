"""``load_pipeline``: import ``module:attribute`` from the project root, with clear errors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import ConfigError
from conveyor.pipeline import Pipeline, load_pipeline

if TYPE_CHECKING:
    from pathlib import Path

PIPE = """
from conveyor import Pipeline, step


@step
def one():
    return 1


pipeline = Pipeline([one], name="loaded")
not_a_pipeline = 42
"""


def _project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_loads_a_pipeline_from_a_package_under_the_root(tmp_path: Path) -> None:
    root = _project(tmp_path, {"pkg/__init__.py": "", "pkg/flows.py": PIPE})
    pipeline = load_pipeline("pkg.flows:pipeline", root)
    assert isinstance(pipeline, Pipeline)
    assert pipeline.name == "loaded"
    assert sys.path[0] == str(root.resolve())


def test_loading_again_picks_up_edited_code(tmp_path: Path) -> None:
    root = _project(tmp_path, {"pkg/__init__.py": "", "pkg/flows.py": PIPE})
    load_pipeline("pkg.flows:pipeline", root)
    (root / "pkg" / "flows.py").write_text(PIPE.replace('name="loaded"', 'name="edited-now"'))
    assert load_pipeline("pkg.flows:pipeline", root).name == "edited-now"


def test_another_projects_package_of_the_same_name_is_replaced(tmp_path: Path) -> None:
    first = _project(tmp_path / "first", {"pkg/__init__.py": "", "pkg/flows.py": PIPE})
    second = _project(
        tmp_path / "second",
        {"pkg/__init__.py": "", "pkg/flows.py": PIPE.replace("loaded", "second")},
    )
    assert load_pipeline("pkg.flows:pipeline", first).name == "loaded"
    assert load_pipeline("pkg.flows:pipeline", second).name == "second"


@pytest.mark.parametrize("ref", ["no_colon", "mod:", ":attr"])
def test_a_malformed_reference_is_a_config_error(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ConfigError, match=r"is not of the form module:attribute"):
        load_pipeline(ref, tmp_path)


def test_a_missing_module_names_the_setting_and_the_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline("nowhere.flows:pipeline", tmp_path)
    assert caught.value.message == (
        "`pipeline: nowhere.flows:pipeline` in conveyor.yaml: there is no module "
        f"'nowhere.flows' in {tmp_path.resolve()}"
    )
    assert "nowhere/flows.py" in (caught.value.hint or "")


def test_a_missing_attribute_lists_the_pipelines_there(tmp_path: Path) -> None:
    root = _project(tmp_path, {"flows_a.py": PIPE})
    with pytest.raises(ConfigError, match=r"module 'flows_a' has no attribute 'pipe'") as caught:
        load_pipeline("flows_a:pipe", root)
    assert caught.value.hint == "pipelines defined there: pipeline"


def test_an_attribute_that_is_not_a_pipeline_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, {"flows_b.py": PIPE})
    with pytest.raises(ConfigError, match=r"names an int, not a Pipeline"):
        load_pipeline("flows_b:not_a_pipeline", root)


def test_an_error_while_importing_is_reported_with_its_traceback(tmp_path: Path) -> None:
    root = _project(tmp_path, {"flows_c.py": "import no_such_library_xyz\n"})
    with pytest.raises(ConfigError) as caught:
        load_pipeline("flows_c:pipeline", root)
    assert caught.value.message == (
        "importing 'flows_c' (`pipeline: flows_c:pipeline` in conveyor.yaml) failed: "
        "ModuleNotFoundError: No module named 'no_such_library_xyz'"
    )
    assert "flows_c.py" in caught.value.details["traceback"]


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    root = _project(tmp_path, {"flows_d.py": "x = 1\ndef broken(:\n"})
    with pytest.raises(ConfigError, match=r"SyntaxError: .*flows_d\.py:2\)"):
        load_pipeline("flows_d:pipeline", root)


def test_a_wiring_error_in_the_module_is_passed_through(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        {
            "flows_e.py": PIPE.replace(
                'Pipeline([one], name="loaded")', 'Pipeline([one, one], name="loaded")'
            )
        },
    )
    with pytest.raises(ConfigError, match=r"pipeline 'loaded' has two steps named 'one'"):
        load_pipeline("flows_e:pipeline", root)


def test_an_installed_module_of_the_same_name_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, {"json/__init__.py": "", "json/flows.py": PIPE})
    with pytest.raises(ConfigError) as caught:
        load_pipeline("json:pipeline", root)
    assert "an installed module has the same name" in (caught.value.hint or "")
