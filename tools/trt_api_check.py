"""Static check: every TensorRT name se-deploy uses exists in each TensorRT version that runs it.

TensorRT cannot be installed where se-deploy is developed, so a misspelt attribute or a
call that TensorRT 11 removed would otherwise only show up on a user's device. This reads
the source (the AST; TensorRT is never imported) of every module in
``se_deploy/runtime/tensorrt`` and ``se_deploy/engines/tensorrt`` and checks each TensorRT name against the API manifests
(one JSON per TensorRT release: classes/enums with their members, module-level names).

What counts as a TensorRT name (the conventions in ``_trt.py`` make these decidable, and
a parameter named like a TensorRT object (:data:`TRT_PARAM_NAMES`) without an annotation
is itself reported, so the convention cannot silently lapse):

* ``trt.X`` and ``trt.X.Y`` where ``trt`` is the tensorrt module;
* ``obj.m`` where ``obj``'s TensorRT type is known: a variable assigned from
  ``trt.X(...)``, from a factory method in :data:`RETURNS` on a typed object, from a
  function of the same module annotated ``-> "trt.X"``, a parameter/attribute annotated
  ``"trt.X"``, or a ``self`` attribute assigned one of those;
* the public methods of a class deriving from ``trt.X`` (calibrators): TensorRT only
  calls them if ``X`` has a member of that name (the manifests list the names TensorRT
  looks up on its trampoline classes too);
* a class deriving from a TensorRT callback interface must also *define* the methods TensorRT
  calls on it that have no implementation in the base (:data:`REQUIRED_OVERRIDES`; the
  binding prints "was not overriden" and hands TensorRT a null answer otherwise). A group of
  alternatives (``IOutputAllocator.reallocate_output`` / ``reallocate_output_async``) is met
  by any member of the group that exists in that version: 8.6 has no async variant, and
  10.x falls back to ``reallocate_output`` when the async one is not overridden;
* a class written once for several TensorRT bases, as Polygraphy writes its calibrator:
  ``class C(base)`` inside a factory decorated ``@trt_bases("X", "Y")`` whose first
  parameter is ``base``. Each public method must exist in *every* declared base, and each
  declared base must exist, in every version that serves the factory. A class deriving
  from any other computed base (an undeclared or rebound parameter, ``bases[kind]``, a
  name imported from ``tensorrt``, ``getattr(trt, ...)``), or a TensorRT-derived class
  that inherits methods from another base, is reported as one that cannot be checked.
  Builtins, classes of the module and names imported from other modules count as fixed
  non-TensorRT classes: no module imports TensorRT at import time, so none can be one.

Which versions a name must exist in:

* every manifest version by default;
* a function decorated ``@serves(10)`` / ``@serves(11)`` only the versions of those majors;
* inside ``if major >= 11:`` (any comparison of a variable named ``major`` with an int
  literal) only the versions satisfying it, in ``else`` the rest; after an ``if`` whose
  body ends in ``raise``/``return``, the rest of the block gets the complement;
* DLA names (:data:`DLA_NAMES`, among them ``Runtime.DLA_core``, set before a DLA plan is
  deserialized) are checked against :data:`DLA_VERSIONS` (8.6 and 10.x up to 10.7 run on DLA
  hardware; 10.8+ and 11.0/11.1 have the names but no DLA device) unless they sit under an
  ``if`` testing ``num_DLA_cores`` (body, or after an ``if ...num_DLA_cores...: raise``).

Run as ``python -m tools.trt_api_check MANIFEST_DIR [FILES...]``.
"""

from __future__ import annotations

import ast
import builtins
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

TRT = "trt"
MAJOR_VAR = "major"
#: The decorator declaring the TensorRT classes a class factory's first parameter may be.
BASES_DECORATOR = "trt_bases"
#: Subscripted bases that are typing constructs, not a lookup that could yield a TensorRT class.
GENERIC_BASES = frozenset({"Generic", "Protocol"})

#: Return types of TensorRT factory methods and properties: (class, member) -> class.
RETURNS: dict[tuple[str, str], str] = {
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("Builder", "build_serialized_network"): "IHostMemory",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
    ("ITimingCache", "serialize"): "IHostMemory",
    ("INetworkDefinition", "get_input"): "ITensor",
    ("INetworkDefinition", "get_output"): "ITensor",
    ("INetworkDefinition", "get_layer"): "ILayer",
    ("OnnxParser", "get_error"): "ParserError",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("ICudaEngine", "create_engine_inspector"): "EngineInspector",
    ("ICudaEngine", "serialize"): "IHostMemory",
    ("ICudaEngine", "get_tensor_shape"): "Dims",
    ("IExecutionContext", "engine"): "ICudaEngine",
    ("IExecutionContext", "get_tensor_shape"): "Dims",
    ("ITensor", "shape"): "Dims",
}
#: Base classes in the bindings (pybind11 ``py::class_<Derived, Base>``) whose members are inherited.
BASES: dict[str, tuple[str, ...]] = {
    "Logger": ("ILogger",),
    "IInt8EntropyCalibrator2": ("IInt8Calibrator",),
    "IInt8EntropyCalibrator": ("IInt8Calibrator",),
    "IInt8MinMaxCalibrator": ("IInt8Calibrator",),
    "IInt8LegacyCalibrator": ("IInt8Calibrator",),
}
#: Methods TensorRT calls back on a Python subclass that the base class does not implement (pure virtual in
#: the binding's trampoline), per interface: each tuple is a group of alternatives, one of which (among
#: those the version has) must be defined. ``python/src/infer/pyCore.cpp`` (PyOutputAllocator) and
#: ``pyInt8.cpp`` (pyCalibratorTrampoline) on every branch from 8.6 to 11.1.
REQUIRED_OVERRIDES: dict[str, tuple[tuple[str, ...], ...]] = {
    "IOutputAllocator": (("reallocate_output", "reallocate_output_async"), ("notify_shape",)),
    "IInt8Calibrator": (("get_batch_size",), ("get_batch",), ("read_calibration_cache",),
                        ("write_calibration_cache",)),
}
#: (class, member) pairs that need DLA hardware support.
DLA_NAMES = frozenset({
    ("DeviceType", "DLA"), ("IBuilderConfig", "DLA_core"), ("Runtime", "DLA_core"),
    ("BuilderFlag", "GPU_FALLBACK"), ("IBuilderConfig", "can_run_on_DLA"),
    ("MemoryPoolType", "DLA_MANAGED_SRAM"), ("MemoryPoolType", "DLA_LOCAL_DRAM"),
    ("MemoryPoolType", "DLA_GLOBAL_DRAM"),
})
#: Manifest versions whose TensorRT supports DLA (11.x regains it in 11.4.1, beyond the manifests).
DLA_VERSIONS = frozenset({"8.6", "10.3", "10.7"})
DLA_GUARD_ATTR = "num_DLA_cores"
#: Parameter names that by convention hold TensorRT objects: they must be annotated (with the
#: TensorRT class, or with another type when they are not TensorRT objects), so their type,
#: and so every name used on them, is decidable.
TRT_PARAM_NAMES = frozenset({"builder", "config", "network", "parser", "engine", "context", "runtime", "inspector",
                             "profile", "timing_cache"})


@dataclass(frozen=True)
class Manifest:
    version: str  # "10.3"
    classes: dict[str, frozenset[str]]
    module: frozenset[str]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def has_class(self, name: str) -> bool:
        return name in self.classes

    def has_top(self, name: str) -> bool:
        return name in self.classes or name in self.module

    def has_member(self, cls: str, member: str) -> bool:
        seen = set()
        todo = [cls]
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            if member in self.classes.get(c, ()):
                return True
            todo.extend(BASES.get(c, ()))
        return False


def load_manifests(directory: str | Path) -> dict[str, Manifest]:
    out = {}
    for p in sorted(Path(directory).glob("*.json")):
        data = json.loads(p.read_text())
        out[p.stem] = Manifest(p.stem, {k: frozenset(v) for k, v in data["classes"].items()},
                               frozenset(data.get("module", ())))
    if not out:
        raise FileNotFoundError(f"no TensorRT API manifests (*.json) in {directory}")
    return dict(sorted(out.items(), key=lambda kv: tuple(int(x) for x in kv[0].split("."))))


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    name: str
    missing_in: tuple[str, ...]
    why: str = "is missing from"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.name} {self.why} TensorRT {', '.join(self.missing_in)}"


@dataclass(frozen=True)
class Use:
    """One checked TensorRT name (for coverage: what the checker actually resolved)."""

    file: str
    line: int
    name: str
    versions: tuple[str, ...]


@dataclass
class _Ctx:
    versions: frozenset[str]
    dla_guarded: bool = False
    env: dict[str, str] = field(default_factory=dict)  # local name -> TensorRT class
    self_attrs: dict[str, str] = field(default_factory=dict)
    untyped: frozenset[str] = frozenset()  # TensorRT-named parameters without an annotation
    #: parameters declared by ``@trt_bases`` -> the TensorRT classes they may hold
    base_params: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def copy(self, **kw) -> "_Ctx":
        d = {"versions": self.versions, "dla_guarded": self.dla_guarded, "env": dict(self.env),
             "self_attrs": self.self_attrs, "untyped": self.untyped, "base_params": self.base_params}
        d.update(kw)
        return _Ctx(**d)


def _annotation_type(node: ast.AST | None) -> str | None:
    """``"trt.ICudaEngine"``, ``trt.ICudaEngine | None`` or ``Optional["trt.X"]`` -> ``"ICudaEngine"``."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == TRT:
            return sub.attr
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub is not node:
            t = _annotation_type(sub)
            if t:
                return t
    return None


def _serves_majors(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, ...] | None:
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Name) and dec.func.id == "serves":
            return tuple(a.value for a in dec.args if isinstance(a, ast.Constant) and isinstance(a.value, int))
    return None


_CMP = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}
_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def _major_guard(test: ast.AST) -> tuple[type, int] | None:
    """``major >= 11`` -> (GtE, 11); ``11 <= major`` -> (GtE, 11); anything else -> None."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and len(test.comparators) == 1):
        return None
    left, op, right = test.left, type(test.ops[0]), test.comparators[0]
    if op not in _CMP:
        return None
    if isinstance(left, ast.Name) and left.id == MAJOR_VAR and isinstance(right, ast.Constant) \
            and isinstance(right.value, int):
        return op, right.value
    if isinstance(right, ast.Name) and right.id == MAJOR_VAR and isinstance(left, ast.Constant) \
            and isinstance(left.value, int):
        return _FLIP[op], left.value
    return None


def _mentions_dla_guard(test: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == DLA_GUARD_ATTR for n in ast.walk(test))


def _terminates(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Raise, ast.Return))


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _bases_decorator(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.expr | None:
    for dec in fn.decorator_list:
        f = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(f, ast.Name) and f.id == BASES_DECORATOR or \
                isinstance(f, ast.Attribute) and f.attr == BASES_DECORATOR:
            return dec
    return None


def _static_class_names(tree: ast.Module) -> frozenset[str]:
    """Names that can only denote one fixed, non-TensorRT class: builtins, classes defined in the module and
    names imported from other modules, unless the module binds the name any other way (an assignment or a
    parameter could make it anything, a TensorRT class included)."""
    fixed = set(dir(builtins))
    from_tensorrt: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ClassDef):
            fixed.add(n.name)
        elif isinstance(n, ast.Import):
            for a in n.names:
                bound = a.asname or a.name.split(".")[0]
                (from_tensorrt if a.name.split(".")[0] == "tensorrt" else fixed).add(bound)
        elif isinstance(n, ast.ImportFrom):
            for a in n.names:
                (from_tensorrt if (n.module or "").split(".")[0] == "tensorrt" else fixed).add(a.asname or a.name)
    rebound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    rebound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    return frozenset(fixed - from_tensorrt - rebound)


class _ModuleChecker:
    def __init__(self, path: Path, display: str, manifests: dict[str, Manifest]) -> None:
        self.path = path
        self.display = display
        self.manifests = manifests
        self.findings: list[Finding] = []
        self.uses: list[Use] = []
        self.func_returns: dict[str, str] = {}
        self.static_classes: frozenset[str] = frozenset()
        self._seen: set[tuple[int, str]] = set()

    # reporting -------------------------------------------------------------
    def _need(self, node: ast.AST, name: str, versions: Iterable[str], present, why: str = "is missing from"
              ) -> None:
        versions = sorted(versions, key=_version_key)
        self.uses.append(Use(self.display, node.lineno, name, tuple(versions)))
        missing = tuple(v for v in versions if not present(self.manifests[v]))
        key = (node.lineno, name)
        if missing and key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(self.display, node.lineno, name, missing, why))

    def _need_member(self, node: ast.AST, cls: str, member: str, ctx: _Ctx) -> None:
        self._need(node, f"{cls}.{member}", ctx.versions, lambda m: m.has_member(cls, member))
        if (cls, member) in DLA_NAMES and not ctx.dla_guarded:
            no_dla = tuple(v for v in sorted(ctx.versions) if v not in DLA_VERSIONS)
            key = (node.lineno, f"{cls}.{member}#dla")
            if no_dla and key not in self._seen:
                self._seen.add(key)
                self.findings.append(Finding(
                    self.display, node.lineno, f"{cls}.{member}", tuple(sorted(no_dla, key=_version_key)),
                    f"needs DLA, unguarded (add `if builder.{DLA_GUARD_ATTR} == 0: raise ...`), and DLA is absent in"))

    def _unchecked(self, node: ast.AST, name: str, versions: Iterable[str], why: str) -> None:
        """Report TensorRT code whose names the check cannot decide, so a convention cannot lapse silently."""
        key = (node.lineno, name)
        versions = tuple(sorted(versions, key=_version_key))
        if versions and key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(self.display, node.lineno, name, versions, f"cannot be checked: {why}, for"))

    # entry -----------------------------------------------------------------
    def run(self) -> None:
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                t = _annotation_type(node.returns)
                if t:
                    self.func_returns[node.name] = t
        self.static_classes = _static_class_names(tree)
        self._block(tree.body, _Ctx(frozenset(self.manifests)))

    # statements ------------------------------------------------------------
    def _block(self, stmts: list[ast.stmt], ctx: _Ctx) -> None:
        ctx = ctx.copy(env=ctx.env)  # same env object: bindings flow through the block
        for stmt in stmts:
            ctx = self._stmt(stmt, ctx)

    def _versions_for(self, ctx: _Ctx, op: type, value: int) -> tuple[frozenset[str], frozenset[str]]:
        yes = frozenset(v for v in ctx.versions if _CMP[op](self.manifests[v].major, value))
        return yes, ctx.versions - yes

    def _stmt(self, stmt: ast.stmt, ctx: _Ctx) -> _Ctx:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(stmt, ctx)
            return ctx
        if isinstance(stmt, ast.ClassDef):
            self._class(stmt, ctx)
            return ctx
        if isinstance(stmt, ast.If):
            guard = _major_guard(stmt.test)
            self._expr(stmt.test, ctx)
            if guard is not None:
                yes, no = self._versions_for(ctx, *guard)
                self._block(stmt.body, ctx.copy(versions=yes))
                self._block(stmt.orelse, ctx.copy(versions=no))
                if _terminates(stmt.body):
                    return ctx.copy(versions=no, env=ctx.env)
                if _terminates(stmt.orelse):
                    return ctx.copy(versions=yes, env=ctx.env)
                return ctx
            if _mentions_dla_guard(stmt.test):
                if _terminates(stmt.body):
                    self._block(stmt.body, ctx)
                    self._block(stmt.orelse, ctx.copy(dla_guarded=True))
                    return ctx.copy(dla_guarded=True, env=ctx.env)
                self._block(stmt.body, ctx.copy(dla_guarded=True))
                self._block(stmt.orelse, ctx)
                return ctx
            self._block(stmt.body, ctx)
            self._block(stmt.orelse, ctx)
            return ctx
        if isinstance(stmt, ast.Assign):
            self._expr(stmt.value, ctx)
            t = self._type(stmt.value, ctx)
            for target in stmt.targets:
                self._expr(target, ctx)  # `config.int8_calibrator = ...` uses a TensorRT name too
                self._bind(target, t, ctx)
            return ctx
        if isinstance(stmt, ast.AugAssign):
            self._expr(stmt.value, ctx)
            self._expr(stmt.target, ctx)
            return ctx
        if isinstance(stmt, ast.AnnAssign):
            self._expr(stmt.target, ctx)
            if stmt.value is not None:
                self._expr(stmt.value, ctx)
            t = _annotation_type(stmt.annotation) or (self._type(stmt.value, ctx) if stmt.value else None)
            self._bind(stmt.target, t, ctx)
            return ctx
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                self._expr(item.context_expr, ctx)
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, self._type(item.context_expr, ctx), ctx)
            self._block(stmt.body, ctx)
            return ctx
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            self._expr(stmt.iter if not isinstance(stmt, ast.While) else stmt.test, ctx)
            self._block(stmt.body, ctx)
            self._block(stmt.orelse, ctx)
            return ctx
        if isinstance(stmt, ast.Try):
            self._block(stmt.body, ctx)
            for h in stmt.handlers:
                self._block(h.body, ctx)
            self._block(stmt.orelse, ctx)
            self._block(stmt.finalbody, ctx)
            return ctx
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.expr):
                self._expr(child, ctx)
        return ctx

    def _function(self, fn, ctx: _Ctx) -> None:
        majors = _serves_majors(fn)
        versions = ctx.versions
        if majors is not None:
            versions = frozenset(v for v in self.manifests if self.manifests[v].major in majors)
        env = dict(ctx.env)
        untyped = set()
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        for a in args:
            t = _annotation_type(a.annotation)
            if t:
                env[a.arg] = t
            else:
                env.pop(a.arg, None)
                if a.arg in TRT_PARAM_NAMES and a.annotation is None:
                    untyped.add(a.arg)
        for d in fn.decorator_list:
            self._expr(d, ctx)
        base_params = {k: v for k, v in ctx.base_params.items() if k not in {a.arg for a in args}}
        declared = self._declared_bases(fn, versions)
        if declared is not None:
            base_params[declared[0]] = declared[1]
        self._block(fn.body, ctx.copy(versions=versions, env=env, untyped=frozenset(untyped),
                                      base_params=base_params))

    def _declared_bases(self, fn, versions: frozenset[str]) -> tuple[str, tuple[str, ...]] | None:
        """``@trt_bases("X", "Y")`` on ``fn(base, ...)`` -> ("base", ("X", "Y")); each X must exist where fn runs."""
        dec = _bases_decorator(fn)
        if dec is None:
            return None
        args = dec.args if isinstance(dec, ast.Call) else []
        names = tuple(a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str))
        params = fn.args.posonlyargs + fn.args.args
        if not names or len(names) != len(args) or isinstance(dec, ast.Call) and dec.keywords:
            self._unchecked(dec, f"@{ast.unparse(dec)}", versions,
                            f"name the TensorRT base classes as string literals (@{BASES_DECORATOR}(\"X\", \"Y\"))")
            return None
        if not params:
            self._unchecked(dec, f"@{ast.unparse(dec)}", versions,
                            f"{fn.name}() must take the TensorRT base class as its first parameter")
            return None
        base = params[0].arg
        if any(isinstance(n, ast.Name) and n.id == base and not isinstance(n.ctx, ast.Load) for n in ast.walk(fn)):
            self._unchecked(dec, f"@{ast.unparse(dec)}", versions,
                            f"{fn.name}() rebinds its base parameter `{base}`, so the declaration may not hold")
            return None
        for name in names:
            self._need(dec, f"trt.{name}", versions, lambda m, n=name: m.has_class(n),
                       f"is a declared base (@{BASES_DECORATOR}) of {fn.name}() but is missing from")
        return base, names

    def _class_bases(self, base: ast.expr, ctx: _Ctx) -> tuple[str, ...] | None:
        """The TensorRT classes ``base`` may be: () for a fixed non-TensorRT class, None when undecidable."""
        if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == TRT:
            return (base.attr,)
        if isinstance(base, ast.Name) and base.id in ctx.base_params:
            return ctx.base_params[base.id]
        if isinstance(base, ast.Subscript):  # Generic[T]; `bases[kind]` could be anything
            name = base.value.attr if isinstance(base.value, ast.Attribute) else getattr(base.value, "id", None)
            return () if name in GENERIC_BASES else None
        root = base
        while isinstance(root, ast.Attribute):  # abc.ABC
            root = root.value
        if isinstance(root, ast.Name) and root.id != TRT and root.id in self.static_classes:
            return ()
        return None

    def _class(self, cls: ast.ClassDef, ctx: _Ctx) -> None:
        trt_bases: list[str] = []
        plain: list[ast.expr] = []
        for base in cls.bases:
            self._expr(base, ctx)
            got = self._class_bases(base, ctx)
            if got is None:
                self._unchecked(cls, f"{cls.name}({ast.unparse(base)})", ctx.versions,
                                f"derive from trt.<Class>, or from the first parameter of a factory decorated "
                                f"@{BASES_DECORATOR}(\"<Class>\", ...) that names every class it may be")
            elif got:
                trt_bases.extend(b for b in got if b not in trt_bases)
            elif not (isinstance(base, ast.Name) and base.id == "object"):
                plain.append(base)
        if trt_bases:
            for base in plain:
                self._unchecked(cls, f"{cls.name}({ast.unparse(base)})", ctx.versions,
                                "methods inherited from a non-TensorRT base of a TensorRT-derived class are "
                                "hidden from the check; write them in the class")
        attrs: dict[str, str] = {}
        for stmt in cls.body:  # class-level annotations: `_engine: "trt.ICudaEngine"`
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                t = _annotation_type(stmt.annotation)
                if t:
                    attrs[stmt.target.id] = t
        inner = ctx.copy(self_attrs=attrs)
        defined = {stmt.name for stmt in cls.body if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for trt_base in trt_bases:
            self._required_overrides(cls, trt_base, defined, ctx.versions)
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and not stmt.name.startswith("_"):
                for trt_base in trt_bases:  # every base it may have: TensorRT calls the method only if the base has it
                    self._need(stmt, f"{trt_base}.{stmt.name}", ctx.versions,
                               lambda m, b=trt_base, n=stmt.name: m.has_member(b, n),
                               "overrides no method of the base class in")
        # two passes: the first learns `self.x = <typed>` assignments, the second checks with them
        saved = (list(self.findings), list(self.uses), set(self._seen))
        self._block(cls.body, inner)
        self.findings, self.uses, self._seen = saved
        self._block(cls.body, inner)

    def _required_overrides(self, cls: ast.ClassDef, base: str, defined: set[str], versions: frozenset[str]) -> None:
        """Each group of :data:`REQUIRED_OVERRIDES` of ``base`` (or a class it derives from) needs one member
        that exists in the version and is defined in the class."""
        interfaces = []
        todo = [base]
        while todo:
            c = todo.pop()
            if c not in interfaces:
                interfaces.append(c)
                todo.extend(BASES.get(c, ()))
        for iface in interfaces:
            for group in REQUIRED_OVERRIDES.get(iface, ()):
                missing = []
                for v in sorted(versions, key=_version_key):
                    m = self.manifests[v]
                    if not m.has_class(base):
                        continue  # reported where the base itself is checked
                    have = [name for name in group if m.has_member(base, name)]
                    if have and not set(have) & defined:
                        missing.append(v)
                key = (cls.lineno, f"{base}.{group[0]}#required")
                if missing and key not in self._seen:
                    self._seen.add(key)
                    self.findings.append(Finding(
                        self.display, cls.lineno, f"{cls.name}.{' or '.join(group)}", tuple(missing),
                        f"must be defined (TensorRT calls it on {base}, whose binding has no implementation), but "
                        "is not, for"))

    def _bind(self, target: ast.AST, t: str | None, ctx: _Ctx) -> None:
        if isinstance(target, ast.Name):
            if t:
                ctx.env[target.id] = t
            else:
                ctx.env.pop(target.id, None)
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            if t and target.attr not in ctx.self_attrs:
                ctx.self_attrs[target.attr] = t
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._bind(elt, None, ctx)

    # expressions -----------------------------------------------------------
    def _type(self, node: ast.AST | None, ctx: _Ctx) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return ctx.env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return ctx.self_attrs.get(node.attr)
            owner = self._type(node.value, ctx)
            if owner is not None:
                return RETURNS.get((owner, node.attr))
            return None
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute):
                if isinstance(f.value, ast.Name) and f.value.id == TRT:
                    if any(m.has_class(f.attr) for m in self.manifests.values()):
                        return f.attr  # constructor
                    return None
                owner = self._type(f.value, ctx)
                if owner is not None:
                    return RETURNS.get((owner, f.attr))
            if isinstance(f, ast.Name):
                return self.func_returns.get(f.id)
        return None

    def _expr(self, node: ast.AST, ctx: _Ctx) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Lambda):
                continue
            if not isinstance(sub, ast.Attribute) or sub.attr.startswith("__") and sub.attr != "__version__":
                continue
            base = sub.value
            if isinstance(base, ast.Name) and base.id == TRT:
                self._need(sub, f"trt.{sub.attr}", ctx.versions, lambda m, n=sub.attr: m.has_top(n))
                continue
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == TRT:
                cls = base.attr
                if any(m.has_class(cls) for m in self.manifests.values()):
                    self._need_member(sub, cls, sub.attr, ctx)
                continue
            owner = self._type(base, ctx)
            if owner is not None:
                self._need_member(sub, owner, sub.attr, ctx)
            elif isinstance(base, ast.Name) and base.id in ctx.untyped:
                self._unchecked(sub, f"{base.id}.{sub.attr}", ctx.versions,
                                "annotate the parameter with its TensorRT class (e.g. \"trt.IBuilderConfig\")")


def check_files(files: Iterable[str | Path], manifests: dict[str, Manifest], root: str | Path | None = None
                ) -> tuple[list[Finding], list[Use]]:
    findings: list[Finding] = []
    uses: list[Use] = []
    for f in files:
        p = Path(f)
        display = str(p.relative_to(root)) if root is not None else str(p)
        mc = _ModuleChecker(p, display, manifests)
        mc.run()
        findings += mc.findings
        uses += mc.uses
    return findings, uses


#: The folders holding se-deploy's TensorRT code: the runtime (runner, CUDA) and the engine build.
TRT_DIRS = ("se_deploy/runtime/tensorrt", "se_deploy/engines/tensorrt")


def package_files() -> list[Path]:
    """Every module of se-deploy's TensorRT layer, runtime and engine build."""
    root = Path(__file__).resolve().parent.parent
    return sorted(p for d in TRT_DIRS for p in (root / d).glob("*.py"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m tools.trt_api_check MANIFEST_DIR [FILES...]", file=sys.stderr)
        return 2
    manifests = load_manifests(argv[0])
    files = [Path(a) for a in argv[1:]] or package_files()
    findings, uses = check_files(files, manifests)
    for f in findings:
        print(f)
    print(f"checked {len(uses)} TensorRT name uses in {len(files)} files against TensorRT "
          f"{', '.join(manifests)}: {len(findings)} problem(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
