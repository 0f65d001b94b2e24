"""The code digest of a step: its own source and the project code it reaches.

We follow what the function's bytecode loads as globals (and its closure, defaults and
imports), like Hamilton's fingerprinting and DVC's stage dependencies, but from live objects:

- a project function: its source, and recursively what *it* loads;
- a project module (``steps.raw(...)`` loads ``steps``): the whole file, and the project
  modules it imports, transitively (parsed from its source, so imports inside functions and
  modules not imported yet count too);
- a project class, or an instance of one: the class's module, as above;
- a constant (numbers, strings, and lists, tuples, sets and dicts of them): its value;
- any other object (a DataFrame or an estimator built at import time, say): its value cannot
  be read reliably, so the module that defines it stands in (the module it was imported from,
  else the step's own module, whole). Loggers, builtins and compiled patterns are exceptions.

Library code (outside the project root, or in a virtual environment inside it) is not
followed: the environment digest covers it. Paths are relative to the root, so the digest is
the same in every checkout. What this cannot see: code reached dynamically (``getattr`` with a
computed name, ``importlib``), and data read without going through ``files=``.
"""

from __future__ import annotations

import ast
import dis
import functools
import importlib.util
import inspect
import logging
import marshal
import re
import sys
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.digest import canonical_json, digest_bytes, digest_json
from conveyor.pipeline._filedigest import file_digest
from conveyor.pipeline._step import Step

if TYPE_CHECKING:
    from conveyor.pipeline._locality import ProjectFiles

__all__ = ["CodeDigester"]

_LOAD_GLOBAL = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOAD_ATTR = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
# Larger constants are not worth serialising on every run; their module file stands in.
_MAX_CONSTANT_ITEMS = 10_000
# Library objects whose identity is all that matters: the environment digest covers them.
_HARMLESS = (
    logging.Logger,
    logging.LoggerAdapter,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.GenericAlias,
)
_HARMLESS_TYPES = frozenset({"numpy.ufunc", "numpy._ArrayFunctionDispatcher"})

_source_digests: weakref.WeakKeyDictionary[types.CodeType, str] = weakref.WeakKeyDictionary()


class _NotConstant(Exception):
    pass


class CodeDigester:
    """Digests the code of steps against one project root; reuse it for one pipeline run."""

    def __init__(self, files: ProjectFiles) -> None:
        self._files = files

    def digest(self, s: Step[..., Any]) -> str:
        """The code digest of a step."""
        walk = _Walk(self._files)
        # The step's own function counts even outside the project (defined in a test module).
        walk.function(s.fn, always=True)
        return digest_json(walk.parts)


class _Walk:
    def __init__(self, files: ProjectFiles) -> None:
        self.files = files
        self.parts: dict[str, str] = {}
        self._seen: dict[int, object] = {}
        self._modules: set[str] = set()

    def _first_visit(self, obj: object) -> bool:
        if id(obj) in self._seen:
            return False
        self._seen[id(obj)] = obj  # keeps obj alive, so its id is not reused during the walk
        return True

    def value(self, obj: object, owner: types.ModuleType | None, label: str) -> None:
        if isinstance(obj, Step):
            obj = obj.fn
        if isinstance(obj, types.ModuleType):
            self.module(obj)
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, type):
            self.cls(obj)
        elif isinstance(obj, types.MethodType | staticmethod | classmethod):
            self.value(obj.__func__, owner, label)
        elif isinstance(obj, functools.partial):
            self.value(obj.func, owner, label)
            for arg in (*obj.args, *obj.keywords.values()):
                self.value(arg, owner, f"{label}.<partial arg>")
        elif isinstance(getattr(obj, "__wrapped__", None), types.FunctionType):
            self.value(obj.__wrapped__, owner, label)  # type: ignore[attr-defined]  # lru_cache
        else:
            self.constant(obj, owner, label)

    def constant(self, obj: object, owner: types.ModuleType | None, label: str) -> None:
        where = f"value:{getattr(owner, '__name__', '?')}.{label}"
        try:
            self.parts[where] = digest_json(_plain(obj, [_MAX_CONSTANT_ITEMS]))
            return
        except _NotConstant:
            pass
        if isinstance(obj, re.Pattern):
            self.parts[where] = digest_json([obj.pattern, obj.flags])
        elif _harmless(obj):
            kind: type = type(obj)
            self.parts[where] = f"{kind.__module__}.{kind.__qualname__}"
        else:
            # Built by code we cannot see into: the module holding it stands in for its value,
            # and an instance of a project class brings in that class's module as well.
            self.cls(type(obj))
            if owner is not None:
                self.defining_module(owner, label)

    def function(self, fn: types.FunctionType | Any, *, always: bool = False) -> None:
        code = getattr(fn, "__code__", None)
        if not isinstance(code, types.CodeType) or not self._first_visit(fn):
            return
        if not always and self.files.relative(code.co_filename) is None:
            return
        self.parts[f"function:{fn.__module__}.{fn.__qualname__}"] = _source_digest(fn, code)
        fn_globals: dict[str, Any] = getattr(fn, "__globals__", {})
        owner = sys.modules.get(fn_globals.get("__name__", ""))
        chains, imports = _code_refs(code)
        for name in imports:
            self.module_named(_resolve(name, fn_globals.get("__package__")))
        for chain in chains:
            if chain[0] not in fn_globals:
                continue  # a builtin, or a global assigned later
            obj = fn_globals[chain[0]]
            # `training.steps.raw` depends on the module `training.steps`, not on the package.
            for attr in chain[1:]:
                nxt = getattr(obj, attr, None) if isinstance(obj, types.ModuleType) else None
                if not isinstance(nxt, types.ModuleType):
                    break
                obj = nxt
            self.value(obj, owner, chain[0])
        for index, cell in enumerate(getattr(fn, "__closure__", None) or ()):
            try:
                contents = cell.cell_contents
            except ValueError:
                continue  # an empty cell: the variable is not assigned yet
            self.value(contents, owner, f"{fn.__qualname__}.<closure {index}>")
        defaults = (*(fn.__defaults__ or ()), *(getattr(fn, "__kwdefaults__", None) or {}).values())
        for index, default in enumerate(defaults):
            self.value(default, owner, f"{fn.__qualname__}.<default {index}>")

    def cls(self, klass: type) -> None:
        module = sys.modules.get(klass.__module__)
        if module is not None:
            self.module(module)

    def module(self, module: types.ModuleType) -> None:
        self.source(module.__name__, getattr(module, "__file__", None), module.__package__)

    def module_named(self, name: str) -> None:
        imported = sys.modules.get(name)
        if imported is not None:
            self.module(imported)
            return
        # Not imported yet: a step may import it inside its body, when it runs. Find its file
        # as the import will, from the root (first on sys.path), without importing it now.
        base = self.files.root.joinpath(*name.split("."))
        for path, package in (
            (base.with_name(base.name + ".py"), name.rpartition(".")[0]),
            (base / "__init__.py", name),
        ):
            if path.is_file():
                self.source(name, str(path), package)
                return

    def source(self, name: str, filename: str | None, package: str | None) -> None:
        """A project module's whole file, and the project modules it imports."""
        if name in self._modules:
            return
        self._modules.add(name)
        rel = self.files.relative(filename)
        if rel is None or filename is None:
            return
        digest = file_digest(self.files.root / rel)
        self.parts[f"file:{rel}"] = digest
        for imported in _module_imports(name, filename, package, digest).modules:
            self.module_named(imported)

    def defining_module(self, owner: types.ModuleType, name: str) -> None:
        """Visit the module that defines global ``name`` of ``owner``: the one it was
        imported from (``from app.state import SCALER``), else ``owner`` itself."""
        filename = getattr(owner, "__file__", None)
        rel = self.files.relative(filename)
        if rel is not None and filename is not None:
            digest = file_digest(self.files.root / rel)
            imports = _module_imports(owner.__name__, filename, owner.__package__, digest)
            source = imports.names.get(name)
            if source is not None:
                self.module_named(source)
                return
        self.module(owner)


def _harmless(obj: object) -> bool:
    kind = type(obj)
    return (
        isinstance(obj, _HARMLESS)
        or f"{kind.__module__}.{kind.__qualname__}" in _HARMLESS_TYPES
        or kind.__module__ == "typing"
    )


def _plain(obj: object, budget: list[int]) -> Any:
    """``obj`` as JSON-able data if it is a constant of plain types, else raise _NotConstant."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _NotConstant
    if obj is None or isinstance(obj, bool | int | float | str):
        return [type(obj).__name__, obj]
    if isinstance(obj, bytes):
        return ["bytes", obj.hex()]
    if isinstance(obj, list | tuple):
        return [type(obj).__name__, [_plain(x, budget) for x in obj]]
    if isinstance(obj, frozenset | set):
        items = sorted((_plain(x, budget) for x in obj), key=canonical_json)
        return [type(obj).__name__, items]
    if isinstance(obj, dict):
        pairs = sorted(
            ([_plain(k, budget), _plain(v, budget)] for k, v in obj.items()), key=canonical_json
        )
        return ["dict", pairs]
    raise _NotConstant


@functools.lru_cache(maxsize=4096)
def _code_refs(code: types.CodeType) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """The global names a code object (and the code nested in it) loads, with attribute
    chains (``training.steps.raw(x)`` gives ``("training", "steps", "raw")``), and the modules
    it imports (``from .x import y`` gives ``".x"`` and ``".x.y"``)."""
    chains: list[tuple[str, ...]] = []
    imports: list[str] = []
    current: list[str] | None = None
    consts: list[Any] = [None, None]  # the last two constants: level and fromlist
    for ins in dis.get_instructions(code):
        if ins.opname in _LOAD_GLOBAL:
            if current:
                chains.append(tuple(current))
            current = [ins.argval]
            continue
        if ins.opname in _LOAD_ATTR and current is not None:
            current.append(ins.argval)
            continue
        if current:
            chains.append(tuple(current))
        current = None
        if ins.opname == "LOAD_CONST":
            consts = [consts[1], ins.argval]
        elif ins.opname == "IMPORT_NAME":
            level, fromlist = consts
            base = "." * (level if isinstance(level, int) else 0) + ins.argval
            imports.append(base)
            for name in fromlist if isinstance(fromlist, tuple) else ():
                if name != "*":
                    imports.append(f"{base}{name}" if base.endswith(".") else f"{base}.{name}")
    if current:
        chains.append(tuple(current))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            nested_chains, nested_imports = _code_refs(const)
            chains.extend(nested_chains)
            imports.extend(nested_imports)
    return tuple(dict.fromkeys(chains)), tuple(dict.fromkeys(imports))


def _resolve(name: str, package: str | None) -> str:
    if not name.startswith("."):
        return name
    try:
        return importlib.util.resolve_name(name, package)
    except (ImportError, ValueError):
        return name.lstrip(".")


@dataclass(frozen=True)
class _Imports:
    """What a module's source imports: every module, and where each from-imported name is from."""

    modules: tuple[str, ...]
    names: dict[str, str]  # local name -> the module it was imported from


# (path, file digest) -> its imports: a file is parsed once per process.
_imports_cache: dict[tuple[str, str], _Imports] = {}


def _module_imports(name: str, path: str, package: str | None, digest: str) -> _Imports:
    """The absolute names of the modules a module's source imports, anywhere in the file.

    ``import a.b`` runs ``a`` and ``a.b``; ``from a import b`` runs ``a`` and perhaps the
    submodule ``a.b``: all of them are candidates, and those not imported are skipped.
    """
    key = (path, digest)
    cached = _imports_cache.get(key)
    if cached is not None:
        return cached
    try:
        tree = ast.parse(Path(path).read_bytes(), path)
    except (OSError, SyntaxError, ValueError):
        return _Imports((), {})
    modules: list[str] = []
    names: dict[str, str] = {}
    top_level = {id(node) for node in _top_level(tree.body)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.extend(_with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve("." * node.level + (node.module or ""), package)
            modules.extend(_with_parents(base))
            for alias in node.names:
                if alias.name != "*":
                    modules.append(f"{base}.{alias.name}")
                    if id(node) in top_level:
                        names[alias.asname or alias.name] = base
    result = _Imports(tuple(dict.fromkeys(n for n in modules if n and n != name)), names)
    _imports_cache[key] = result
    return result


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when the module is imported: the body and its if/try/with blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.For | ast.While):
            out.extend(_top_level(node.body + node.orelse))
        elif isinstance(node, ast.With):
            out.extend(_top_level(node.body))
        elif isinstance(node, ast.Try | ast.TryStar):
            blocks = node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                blocks += handler.body
            out.extend(_top_level(blocks))
    return out


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _source_digest(fn: Any, code: types.CodeType) -> str:
    cached = _source_digests.get(code)
    if cached is None:
        try:
            cached = digest_bytes(inspect.getsource(fn).encode())
        except (OSError, TypeError):
            # No source file (defined in a REPL or with exec): the bytecode is what runs.
            cached = digest_bytes(marshal.dumps(code))
        _source_digests[code] = cached
    return cached
