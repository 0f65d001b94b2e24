"""A run reports the stat of every data file and folder its steps read, taken before the read:
what the run lock records, so that a change made while the pipeline runs shows next time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.pipeline.conftest import MakeProject, Project


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def test_a_data_file_is_reported_with_its_stat(flow_sqlite: Project) -> None:
    data = flow_sqlite.root / "data" / "nums.txt"
    result = flow_sqlite.run()
    assert result.input_stats == {str(data): _stat(data)}
    # Cached, the file is still what the run depends on.
    again = flow_sqlite.run()
    assert flow_sqlite.ran(again) == set()
    assert again.input_stats == {str(data): _stat(data)}


def test_a_folder_is_reported_with_every_folder_and_file_under_it(
    make_project: MakeProject,
) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                import os

                from conveyor import Pipeline, step


                @step(files=("folder",))
                def listing(folder):
                    return sorted(os.listdir(folder))


                pipeline = Pipeline([listing], name="folder")
            """,
            "data/in/a.txt": "a",
            "data/in/sub/b.txt": "b",
        },
        {"folder": "data/in"},
    )
    top = project.root / "data" / "in"
    result = project.run()
    paths = [top, top / "a.txt", top / "sub", top / "sub" / "b.txt"]
    assert result.input_stats == {str(p): _stat(p) for p in paths}


def test_the_stat_is_the_one_from_before_the_step_read_the_file(make_project: MakeProject) -> None:
    # A step that rewrites its own input: the reported stat is the one the digest was made from.
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                from conveyor import Pipeline, step


                @step(files=("data_path",))
                def consume(data_path):
                    with open(data_path, "a") as fh:
                        fh.write("more\\n")
                    return 1


                pipeline = Pipeline([consume], name="consume")
            """,
            "data/x.txt": "x\n",
        },
        {"data_path": "data/x.txt"},
    )
    data = project.root / "data" / "x.txt"
    before = _stat(data)
    result = project.run()
    assert result.input_stats[str(data)] == before
    assert _stat(data) != before
    assert os.path.getsize(data) == len("x\nmore\n")
