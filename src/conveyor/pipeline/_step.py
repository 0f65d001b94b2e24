"""``@step``: a plain function becomes a pipeline step, wired by the names of its parameters.

The wiring follows Hamilton: a step's output is named after its function (or ``name=``), and
each parameter is the output of the step of that name, a key of ``params:`` in conveyor.yaml, or
has a default. ``files=`` names the parameters whose value is a path to a data file or folder;
the file's content becomes part of the step's cache key.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from conveyor.core.errors import ConfigError
from conveyor.core.names import validate_name

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Param", "Step", "step"]

P = ParamSpec("P")
R = TypeVar("R")

_UNSUPPORTED_KINDS: dict[inspect._ParameterKind, str] = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a step's function: its name, and its default if it has one."""

    name: str
    has_default: bool
    default: Any = None


class Step(Generic[P, R]):
    """A function wired into a pipeline; calling it calls the function unchanged.

    Attributes:
        name: The name of the step's output, which downstream parameters refer to.
        fn: The wrapped function.
        params: The function's parameters, in order.
        files: The parameters whose values are paths of input files or folders.
        cache: Whether a previous run with the same cache key may stand in for running it.
    """

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str

    def __init__(
        self, fn: Callable[P, R], *, name: str, files: tuple[str, ...], cache: bool
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self.files = files
        self.cache = cache
        self.params = _params_of(fn, name)
        known = {p.name for p in self.params}
        for file_param in files:
            if file_param not in known:
                raise ConfigError(
                    f"step '{name}': files= names '{file_param}', which is not a parameter of "
                    f"{_signature_text(fn)}",
                    hint=f"use one of: {', '.join(sorted(known)) or '(no parameters)'}",
                )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Step {self.name!r} {_signature_text(self.fn)}>"

    def __reduce__(self) -> tuple[Callable[[str, str], Step[..., Any]], tuple[str, str]]:
        # The module attribute named after the function is this Step, not the function, so the
        # function cannot be pickled by reference; the Step can (process pools, Dask).
        return _import_step, (self.__module__, self.__qualname__)


def _import_step(module: str, qualname: str) -> Step[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    assert isinstance(obj, Step)
    return obj


def _signature_text(fn: Callable[..., Any]) -> str:
    try:
        return f"{getattr(fn, '__name__', 'function')}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return getattr(fn, "__name__", repr(fn))


def _params_of(fn: Callable[..., Any], name: str) -> tuple[Param, ...]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"step '{name}': cannot read the parameters of {fn!r}: {exc}",
            hint="decorate a plain Python function with @step",
        ) from exc
    params = []
    for param in signature.parameters.values():
        kind = _UNSUPPORTED_KINDS.get(param.kind)
        if kind is not None:
            raise ConfigError(
                f"step '{name}': parameter '{param.name}' is {kind}, which a step cannot take",
                hint="give each input its own named parameter; Conveyor passes inputs by name",
            )
        has_default = param.default is not inspect.Parameter.empty
        params.append(Param(param.name, has_default, param.default if has_default else None))
    return tuple(params)


def _make_step(
    fn: Callable[P, R], name: str | None, files: Sequence[str], cache: bool
) -> Step[P, R]:
    if isinstance(fn, Step):
        fn = fn.fn
    if not callable(fn):
        raise ConfigError(
            f"@step decorates {fn!r}, which is not a function",
            hint="put @step on a `def` function",
        )
    step_name = name if name is not None else getattr(fn, "__name__", "")
    validate_name("step", step_name)
    file_names = (files,) if isinstance(files, str) else tuple(files)
    return Step(fn, name=step_name, files=file_names, cache=cache)


@overload
def step(fn: Callable[P, R]) -> Step[P, R]: ...


@overload
def step(
    *, name: str | None = None, files: Sequence[str] = (), cache: bool = True
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    files: Sequence[str] = (),
    cache: bool = True,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step; use bare (``@step``) or with options (``@step(...)``).

    Args:
        fn: The function, when used bare.
        name: The name of the step's output; defaults to the function's name.
        files: Parameters whose value is the path (relative to the project root) of a data file
            or folder. Its content digest is part of the cache key, and the function receives
            the absolute path.
        cache: ``False`` runs the step every time, even when nothing it reads has changed.

    Returns:
        A :class:`Step`, still callable as the function.

    Raises:
        ConfigError: ``files=`` names an unknown parameter, or the function takes ``*args``,
            ``**kwargs`` or positional-only parameters.
        ValidationError: the step's name is not a valid name.
    """
    if fn is not None:
        return _make_step(fn, name, files, cache)

    def decorate(func: Callable[P, R]) -> Step[P, R]:
        return _make_step(func, name, files, cache)

    return decorate
