"""The package's layers point one way: runtime <- export/calibration <- engines/bench <- pipeline/report <- commands.

Read statically from the source (every import statement, at module level or inside a
function), so an upward import cannot hide inside a function body.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "se_deploy"

#: Units (modules or subpackages of se_deploy) by layer, bottom first. A unit may import
#: units of its own layer or below; within one layer the imports must not form a circle.
LAYERS: list[set[str]] = [
    {"se_deploy", "errors", "_util", "files", "names", "config", "onnx_io", "numerics", "envinfo"},
    {"runtime", "models"},
    {"export", "calibration"},
    {"engines", "bench", "budget"},
    {"pipeline", "report", "doctor"},
    {"commands", "cli", "console", "__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
#: Where a function body may import se_deploy modules: the commands, so `se-deploy --help`
#: does not pay for torch and onnxruntime. Everywhere else imports sit at module level.
LAZY_OK = {"commands", "cli", "__main__"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "se_deploy"


def _imports():
    """(importing module, imported module, line, inside a function) for every se_deploy import."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        in_function = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "se_deploy":  # a submodule, or a name such as __version__ from the package
                    targets = [f"se_deploy.{a.name}" if _is_module(f"se_deploy.{a.name}") else "se_deploy"
                               for a in node.names]
                elif node.module.startswith("se_deploy."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("se_deploy")]
            for t in targets:
                out.append((mod, t, f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", id(node) in in_function))
    return out


IMPORTS = _imports()


def test_every_unit_has_a_layer():
    units = {_unit(m) for m, *_ in IMPORTS} | {_unit(t) for _, t, *_ in IMPORTS}
    units |= {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"modules without a layer (add them to LAYERS): {sorted(units - set(RANK))}"


def test_no_import_points_up():
    upward = [f"{where}: {src} imports {dst} ({_unit(src)} is layer {RANK[_unit(src)]}, {_unit(dst)} is layer "
              f"{RANK[_unit(dst)]})" for src, dst, where, _ in IMPORTS if RANK[_unit(dst)] > RANK[_unit(src)]]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v, counter=[0]):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_between_units():
    edges = defaultdict(set)
    for src, dst, _, _ in IMPORTS:
        if _unit(src) != _unit(dst) and _unit(dst) != "se_deploy":
            edges[_unit(src)].add(_unit(dst))
    assert _cycles(edges) == []


def test_no_import_circles_between_modules():
    edges = defaultdict(set)
    for src, dst, _, _ in IMPORTS:
        if dst != "se_deploy" and src != dst and not src.startswith(dst + "."):  # a module may read its package
            edges[src].add(dst)
    assert _cycles(edges) == []


def test_library_imports_sit_at_module_level():
    hidden = [f"{where}: {src} imports {dst} inside a function" for src, dst, where, lazy in IMPORTS
              if lazy and _unit(src) not in LAZY_OK]
    assert not hidden, ("a function-level import hides the import graph; import at module level "
                        "(heavy optional libraries such as tensorrt stay lazy, se_deploy modules do not):\n"
                        + "\n".join(hidden))


def test_the_checks_can_fail():
    """The test above would catch an upward import and a circle (checked on synthetic data)."""
    assert RANK["runtime"] < RANK["calibration"] < RANK["engines"] < RANK["report"] < RANK["commands"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


@pytest.mark.parametrize("module", ["se_deploy.runtime.base", "se_deploy.runtime.registry",
                                    "se_deploy.runtime.onnxruntime", "se_deploy.runtime.tensorrt.runner"])
def test_runtime_imports_nothing_above_it(module):
    above = {u for u, r in RANK.items() if r > RANK["runtime"]}
    bad = [(dst, where) for src, dst, where, _ in IMPORTS if src == module and _unit(dst) in above]
    assert bad == []
