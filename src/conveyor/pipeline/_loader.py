"""``load_pipeline``: import the project's pipeline from ``pipeline:`` in conveyor.yaml.

The project root goes first on ``sys.path``, as when a user runs ``python -m`` there. Project
modules already imported (from another project, or an older version of this one's files) are
forgotten first, so the pipeline that runs is always the code now on disk: the same code the
cache keys are computed from.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

from conveyor.core.errors import ConfigError, ConveyorError
from conveyor.pipeline._locality import ProjectFiles
from conveyor.pipeline._pipeline import Pipeline

__all__ = ["load_pipeline"]

_INSTALLED = frozenset({"site-packages", "dist-packages"})


def load_pipeline(ref: str, root: Path) -> Pipeline:
    """Import ``module:attribute`` with ``root`` on ``sys.path`` and return the Pipeline there.

    Args:
        ref: ``pipeline:`` from conveyor.yaml, e.g. ``training.pipeline:pipeline``.
        root: The project root, from which the module is imported.

    Raises:
        ConfigError: the reference is malformed, the module is not in the project or fails to
            import, the attribute is missing, or it is not a Pipeline.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"`pipeline: {ref}` in conveyor.yaml is not of the form module:attribute",
            hint="write e.g. `pipeline: training.pipeline:pipeline`",
        )
    files = ProjectFiles(root)
    _forget_project_modules(files, module_name.split(".")[0])
    root_entry = str(files.root)
    while root_entry in sys.path:
        sys.path.remove(root_entry)
    sys.path.insert(0, root_entry)
    importlib.invalidate_caches()

    module = _import(module_name, ref, files)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Pipeline))
            raise ConfigError(
                f"`pipeline: {ref}` in conveyor.yaml: module '{module_name}' has no "
                f"attribute '{attr}'",
                hint=f"pipelines defined there: {', '.join(found)}"
                if found
                else f"define `{attr} = Pipeline([...], name=...)` in {module.__file__}",
            )
        obj = getattr(obj, part)
    if not isinstance(obj, Pipeline):
        raise ConfigError(
            f"`pipeline: {ref}` in conveyor.yaml names {_a(type(obj).__name__)}, not a Pipeline",
            hint=f"set `{attr} = Pipeline([step, ...], name=...)` "
            "(from conveyor import Pipeline, step)",
        )
    return obj


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _import(module_name: str, ref: str, files: ProjectFiles) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ConveyorError:
        raise  # a Pipeline or @step error while the module ran: already says what to fix
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                f"`pipeline: {ref}` in conveyor.yaml: there is no module '{module_name}' "
                f"in {files.root}",
                hint=f"check the module path; e.g. {module_name.replace('.', '/')}.py "
                "under the project root",
            ) from exc
        raise _import_failed(module_name, ref, exc) from exc
    except Exception as exc:
        raise _import_failed(module_name, ref, exc) from exc
    if files.relative(getattr(module, "__file__", None)) is None:
        raise ConfigError(
            f"`pipeline: {ref}` in conveyor.yaml: '{module_name}' is imported from "
            f"{getattr(module, '__file__', None) or 'a built-in module'}, not from {files.root}",
            hint="an installed module has the same name; rename the project's package",
        )
    return module


def _import_failed(module_name: str, ref: str, exc: BaseException) -> ConfigError:
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    return ConfigError(
        f"importing '{module_name}' (`pipeline: {ref}` in conveyor.yaml) failed: "
        f"{type(exc).__name__}: {exc}{where}",
        hint="fix the error in the module (its traceback is in the error's details)",
        details={"traceback": "".join(traceback.format_exception(exc))},
    )


def _forget_project_modules(files: ProjectFiles, top: str) -> None:
    """Drop this project's modules, and another project's package of the same name as ours,
    from ``sys.modules``: in a fresh process, the root first on sys.path would win too."""
    prefix = str(files.root)
    other = sys.modules.get(top)
    if other is not None and _is_other_project(other, files):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    for name, module in list(sys.modules.items()):
        # The string test first: resolving the path of each of ~2,000 modules costs ~20 ms.
        if any(
            loc.startswith(prefix) and files.relative(loc) is not None for loc in _locations(module)
        ):
            del sys.modules[name]


def _locations(module: Any) -> list[str]:
    spec = getattr(module, "__spec__", None)
    locations = [getattr(module, "__file__", None)]
    if spec is not None and spec.submodule_search_locations:
        locations.extend(spec.submodule_search_locations)  # namespace packages
    return [loc for loc in locations if isinstance(loc, str)]


def _is_other_project(module: Any, files: ProjectFiles) -> bool:
    """Whether ``module`` is plain source from elsewhere that our root also provides."""
    locations = _locations(module)
    if not locations or not _INSTALLED.isdisjoint(Path(locations[0]).parts):
        return False
    if any(loc.startswith((sys.prefix, sys.base_prefix)) for loc in locations):
        return False  # the standard library, or the interpreter's own environment
    name = module.__name__
    return (files.root / name).is_dir() or (files.root / f"{name}.py").is_file()
