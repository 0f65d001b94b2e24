"""``@step`` and ``Pipeline``: wiring by name, and the errors that say what to fix."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core.errors import ConfigError, NotFoundError, ValidationError
from conveyor.pipeline import Pipeline, Step, run_pipeline, step

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.pipeline.conftest import MakeProject

    from conveyor.store.artifacts import ArtifactStore, LocalArtifactStore
    from conveyor.store.metadata import MetadataStore


@step
def source(n: int) -> list[int]:
    """The numbers below n."""
    return list(range(n))


@step(name="doubled")
def double_them(source: list[int], factor: int = 2) -> list[int]:
    return [v * factor for v in source]


@step
def total(doubled: list[int], source: list[int]) -> int:
    return sum(doubled) + len(source)


def test_a_step_is_still_the_function() -> None:
    assert isinstance(source, Step)
    assert source(3) == [0, 1, 2]
    assert double_them([1, 2], factor=3) == [3, 6]
    assert source.__name__ == "source"
    assert source.__doc__ == "The numbers below n."
    assert source.name == "source"
    assert double_them.name == "doubled"
    assert [(p.name, p.has_default) for p in double_them.params] == [
        ("source", False),
        ("factor", True),
    ]


def test_a_module_level_step_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(source)) is source


def test_steps_are_ordered_topologically_and_stably() -> None:
    pipeline = Pipeline([total, double_them, source], name="p")
    assert [s.name for s in pipeline.steps] == ["source", "doubled", "total"]
    assert pipeline.upstream("total") == ("doubled", "source")
    assert pipeline.upstream("source") == ()

    @step
    def a() -> int:
        return 1

    @step
    def b() -> int:
        return 2

    @step
    def c(b: int, a: int) -> int:
        return a + b

    # Independent steps keep the order they were listed in.
    assert [s.name for s in Pipeline([c, b, a], name="p").steps] == ["b", "a", "c"]


def test_a_duplicate_step_name_is_refused() -> None:
    @step(name="source")
    def other() -> int:
        return 1

    with pytest.raises(ConfigError, match=r"pipeline 'p' has two steps named 'source'") as caught:
        Pipeline([source, other], name="p")
    assert "@step(name=" in (caught.value.hint or "")


def test_a_cycle_is_refused_naming_its_steps() -> None:
    @step
    def a(c: int) -> int:
        return c

    @step
    def b(a: int) -> int:
        return a

    @step
    def c(b: int) -> int:
        return b

    with pytest.raises(ConfigError, match=r"pipeline 'loop' has a cycle: (a|b|c) -> .* -> \1"):
        Pipeline([a, b, c], name="loop")


def test_a_step_reading_its_own_output_is_refused() -> None:
    @step
    def count(count: int) -> int:
        return count

    with pytest.raises(ConfigError, match=r"step 'count' has a parameter named like its own"):
        Pipeline([count], name="p")


def test_something_that_is_not_a_step_is_refused() -> None:
    def plain() -> int:
        return 1

    with pytest.raises(ConfigError, match=r"item 2 \(plain\) is not a step") as caught:
        Pipeline([source, plain], name="p")  # type: ignore[list-item]
    assert "@step" in (caught.value.hint or "")


def test_files_must_name_a_parameter() -> None:
    with pytest.raises(ConfigError, match=r"step 'raw': files= names 'data_pth'") as caught:

        @step(files=("data_pth",))
        def raw(data_path: str) -> str:
            return data_path

    assert caught.value.hint == "use one of: data_path"


def test_files_may_not_name_an_upstream_output() -> None:
    @step(files=("source",))
    def reader(source: list[int]) -> int:
        return len(source)

    with pytest.raises(ConfigError, match=r"lists 'source' in files=, but 'source' is the output"):
        Pipeline([source, reader], name="p")


@pytest.mark.parametrize(
    ("signature", "kind"),
    [("*args", r"\*args"), ("**kw", r"\*\*kwargs"), ("x, /", "positional-only")],
)
def test_variadic_and_positional_only_parameters_are_refused(signature: str, kind: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def f({signature}):\n    return 1", namespace)
    with pytest.raises(ConfigError, match=rf"step 'f': parameter '\w+' is {kind}"):
        step(namespace["f"])


def test_an_invalid_step_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"step name 'has space' is not valid"):
        step(name="has space")(lambda: 1)


def _run(
    pipeline: Pipeline,
    params: dict[str, Any],
    root: Path,
    metadata: MetadataStore,
    artifacts: ArtifactStore,
) -> Any:
    return run_pipeline(
        pipeline, params=params, metadata=metadata, artifacts=artifacts, actor="t", root=root
    )


def test_missing_params_are_all_named_before_anything_runs(
    tmp_path: Path, sqlite_store: MetadataStore, artifact_store: LocalArtifactStore
) -> None:
    @step
    def needs(alpha: int, beta: int, gamma: int = 3) -> int:
        return alpha + beta + gamma

    pipeline = Pipeline([source, needs], name="p")
    with pytest.raises(ConfigError) as caught:
        _run(pipeline, {"beta": 1}, tmp_path, sqlite_store, artifact_store)
    err = caught.value
    assert err.message == (
        "pipeline 'p' needs 2 parameters that no step produces and `params:` in conveyor.yaml "
        "does not set: 'n' (step source), 'alpha' (step needs)"
    )
    assert err.hint == (
        "add `n: <value>` under `params:` in conveyor.yaml, or give the function parameter a "
        "default"
    )
    assert artifact_store.root.exists() is False  # nothing ran, nothing stored


def test_a_default_is_used_and_a_param_overrides_it(
    tmp_path: Path, sqlite_store: MetadataStore, artifact_store: ArtifactStore
) -> None:
    pipeline = Pipeline([source, double_them, total], name="p")
    result = _run(pipeline, {"n": 3}, tmp_path, sqlite_store, artifact_store)
    assert result.load("doubled") == [0, 2, 4]
    result = _run(pipeline, {"n": 3, "factor": 10}, tmp_path, sqlite_store, artifact_store)
    assert result.load("doubled") == [0, 10, 20]
    assert result.load("total") == 33


def test_a_missing_input_file_is_named_with_its_param(make_project: MakeProject) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                from conveyor import Pipeline, step


                @step(files=("data_path",))
                def raw(data_path):
                    return open(data_path).read()


                pipeline = Pipeline([raw], name="files")
            """,
        },
        {"data_path": "data/train.csv"},
    )
    with pytest.raises(NotFoundError) as caught:
        project.run()
    err = caught.value
    assert err.message == "step 'raw' reads data/train.csv (param data_path), which does not exist"
    assert err.hint is not None
    assert "fix `data_path:` under `params:` in conveyor.yaml" in err.hint


def test_a_file_param_that_is_not_a_path_is_refused(make_project: MakeProject) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                from conveyor import Pipeline, step


                @step(files=("data_path",))
                def raw(data_path):
                    return 1


                pipeline = Pipeline([raw], name="files")
            """,
        },
        {"data_path": 3},
    )
    with pytest.raises(ConfigError, match=r"lists 'data_path' in files=, but its value 3 is not"):
        project.run()


def test_a_file_step_gets_an_absolute_path_and_folders_are_digested(
    make_project: MakeProject,
) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                import os

                from conveyor import Pipeline, step


                @step(files=("images",))
                def listing(images):
                    assert os.path.isabs(images)
                    return sorted(os.listdir(images))


                pipeline = Pipeline([listing], name="folder")
            """,
            "data/images/a.txt": "a",
        },
        {"images": "data/images"},
    )
    assert project.run().load("listing") == ["a.txt"]
    assert project.ran(project.run()) == set()
    project.write("data/images/sub/b.txt", "b")
    assert project.run().load("listing") == ["a.txt", "sub"]
    (project.root / "data/images/sub/b.txt").write_text("changed")
    assert project.ran(project.run()) == {"listing"}
