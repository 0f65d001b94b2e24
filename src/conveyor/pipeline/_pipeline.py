"""``Pipeline``: steps wired by name, checked when it is built, ordered topologically."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError
from conveyor.core.names import validate_name
from conveyor.pipeline._step import Step

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["Pipeline"]


class Pipeline:
    """A named set of steps, ordered so that every step comes after the steps it reads.

    A parameter named like another step is that step's output; any other parameter is looked up
    in ``params:`` when the pipeline runs (or takes its default). The order is stable: among
    steps that could run next, the one listed first goes first.

    Args:
        steps: The steps, in any order.
        name: The pipeline's name, recorded with every run.

    Raises:
        ConfigError: an item is not a step, two steps share a name, the steps read each other
            in a cycle, or a ``files=`` parameter is another step's output.
        ValidationError: the name is not a valid name.
    """

    def __init__(self, steps: Sequence[Step[..., Any]], *, name: str) -> None:
        self.name = validate_name("pipeline", name)
        by_name: dict[str, Step[..., Any]] = {}
        for index, item in enumerate(steps):
            if not isinstance(item, Step):
                what = getattr(item, "__name__", type(item).__name__)
                raise ConfigError(
                    f"pipeline '{name}': item {index + 1} ({what}) is not a step",
                    hint="decorate the function with @step (from conveyor import step)",
                )
            if item.name in by_name:
                raise ConfigError(
                    f"pipeline '{name}' has two steps named '{item.name}' "
                    f"({_where(by_name[item.name])} and {_where(item)})",
                    hint="rename one function, or give it @step(name=...)",
                )
            by_name[item.name] = item
        self._upstream = {s.name: _upstream_of(s, by_name, name) for s in by_name.values()}
        self.steps: tuple[Step[..., Any], ...] = _topological(list(by_name.values()), self)

    def upstream(self, step_name: str) -> tuple[str, ...]:
        """The names of the steps whose outputs ``step_name`` takes, in parameter order."""
        return self._upstream[step_name]

    def __iter__(self) -> Iterator[Step[..., Any]]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {' -> '.join(s.name for s in self.steps)}>"


def _where(s: Step[..., Any]) -> str:
    return f"{s.fn.__module__}.{getattr(s.fn, '__qualname__', s.name)}"


def _upstream_of(
    s: Step[..., Any], by_name: dict[str, Step[..., Any]], pipeline: str
) -> tuple[str, ...]:
    upstream = []
    for param in s.params:
        if param.name == s.name:
            raise ConfigError(
                f"pipeline '{pipeline}': step '{s.name}' has a parameter named like its own "
                "output, so it would read itself",
                hint=f"rename the parameter '{param.name}' or the step",
            )
        if param.name in by_name:
            if param.name in s.files:
                raise ConfigError(
                    f"pipeline '{pipeline}': step '{s.name}' lists '{param.name}' in files=, but "
                    f"'{param.name}' is the output of step '{param.name}', not a path from params",
                    hint="files= is for parameters set in `params:` of conveyor.yaml",
                )
            upstream.append(param.name)
    return tuple(upstream)


def _topological(steps: list[Step[..., Any]], pipeline: Pipeline) -> tuple[Step[..., Any], ...]:
    index = {s.name: i for i, s in enumerate(steps)}
    waiting = {s.name: len(pipeline.upstream(s.name)) for s in steps}
    downstream: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for up in pipeline.upstream(s.name):
            downstream[up].append(s.name)
    ready = [index[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[Step[..., Any]] = []
    while ready:
        current = steps[heapq.heappop(ready)]
        order.append(current)
        for down in downstream[current.name]:
            waiting[down] -= 1
            if waiting[down] == 0:
                heapq.heappush(ready, index[down])
    if len(order) < len(steps):
        cycle = _find_cycle({n for n, c in waiting.items() if c > 0}, pipeline)
        raise ConfigError(
            f"pipeline '{pipeline.name}' has a cycle: {' -> '.join(cycle)}",
            hint="a step cannot read, directly or indirectly, its own output; "
            "rename a parameter to break the cycle",
        )
    return tuple(order)


def _find_cycle(stuck: set[str], pipeline: Pipeline) -> list[str]:
    # Every stuck step has a stuck upstream, so walking upstream must revisit a step.
    path: list[str] = []
    seen: dict[str, int] = {}
    current = min(stuck)
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(up for up in pipeline.upstream(current) if up in stuck)
    cycle = [*path[seen[current] :], current]
    cycle.reverse()
    return cycle
