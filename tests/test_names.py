"""Every name list lives in se_deploy.names, and every table keyed by names covers its list."""

import ast
import enum
from pathlib import Path

import pytest

import se_deploy
from se_deploy import names
from se_deploy.names import (Backend, BenchMode, CalibMethod, EngineBackend, Exporter, PreprocessPreset, QuantTarget,
                             Simplifier)

PACKAGE = Path(se_deploy.__file__).parent

# commands/bench.py declares its own Backend/Mode choices; it is being reworked on another branch and
# should take them from se_deploy.names there. Remove it from this list when that lands.
NOT_YET: set[str] = set()


def _literal_name_lists(tree: ast.AST):
    """(line, strings) for each tuple/list/set literal, dict key set or enum body made only of strings."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.ClassDef) and any("Enum" in ast.unparse(b) for b in node.bases):
            elts = [s.value for s in node.body if isinstance(s, ast.Assign)]
        else:
            continue
        strs = [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if len(strs) >= 2 and len(strs) == len(elts):
            yield node.lineno, set(strs)


def _copies(source: str, where: str) -> list[str]:
    return [f"{where}:{line}: {sorted(strs)} spells out {cls.__name__}"
            for line, strs in _literal_name_lists(ast.parse(source)) for cls in names.ALL if strs <= set(cls.values())]


def test_no_name_list_is_spelled_out_outside_names_py():
    found = []
    for py in sorted(PACKAGE.rglob("*.py")):
        rel = py.relative_to(PACKAGE).as_posix()
        if rel != "names.py" and rel not in NOT_YET:
            found += _copies(py.read_text(), rel)
    assert not found, "use se_deploy.names instead:\n" + "\n".join(found)


def test_the_scan_would_catch_a_copy():
    src = ('MODES = ("singlestream", "offline")\nT = {"cpu": 1, "tensorrt": 2}\n'
           'class M(str, Enum):\n    a = "dynamo"\n    b = "legacy"\n')
    found = {frozenset(s) for _, s in _literal_name_lists(ast.parse(src))}
    assert found == {frozenset({"singlestream", "offline"}), frozenset({"cpu", "tensorrt"}),
                     frozenset({"dynamo", "legacy"})}
    assert len(_copies(src, "x.py")) == 3
    # members picked by reference, and lists that only share a name, are not copies
    assert not _copies('X = (CalibMethod.entropy, CalibMethod.minmax)\nY = ("onnxruntime", "onnxsim", "numpy")\n', "y")


@pytest.mark.parametrize("cls", names.ALL, ids=lambda c: c.__name__)
def test_names_print_and_format_as_their_value(cls):
    for m in cls:
        assert str(m) == f"{m}" == f"{m:}" == m.value == m
        assert f"{m:>20}" == f"{m.value:>20}"
        assert cls(m.value) is m and m.name == m.value
    assert cls.choices() == ", ".join(cls.values())


def test_engine_backends_follow_backend():
    """Adding a backend to Backend is the one line that also offers it to the pipeline."""
    assert EngineBackend.auto.value == "auto"
    assert set(EngineBackend.values()) == {"auto"} | {b.value for b in Backend if b is not Backend.torch}
    assert issubclass(EngineBackend, names.Name) and issubclass(EngineBackend, enum.Enum)


def test_backend_names_are_the_runtime_registry():
    from se_deploy.runtime.registry import backend_names

    assert set(backend_names()) == set(Backend.values())


def test_tables_keyed_by_names_cover_their_list():
    from se_deploy.calibration.preprocess import PRESETS
    from se_deploy.calibration.quantize import TARGETS
    from se_deploy.calibration.ranges import ORT_METHODS, ort_method
    from se_deploy.engines.tensorrt.calibrator import ALGORITHMS
    from se_deploy.engines.tensorrt.config import CALIBRATORS

    assert set(TARGETS) == set(QuantTarget) and all(TARGETS[t].name == t for t in QuantTarget)
    assert set(PRESETS) == set(PreprocessPreset) and all(PRESETS[p].name == p for p in PreprocessPreset)
    assert set(ORT_METHODS) == set(CalibMethod)
    assert {ort_method(m).name for m in CalibMethod} == {"MinMax", "Entropy", "Percentile"}
    assert set(ALGORITHMS) == set(CALIBRATORS) <= set(CalibMethod)


def test_config_fields_take_their_choices_from_names():
    from se_deploy.bench.suite import BenchConfig
    from se_deploy.calibration.quantize import QuantConfig
    from se_deploy.export.torch_export import ExportConfig

    fields = {(ExportConfig, "exporter"): Exporter, (ExportConfig, "simplifier"): Simplifier,
              (QuantConfig, "target"): QuantTarget, (QuantConfig, "method"): CalibMethod,
              (BenchConfig, "mode"): BenchMode}
    for (model, field), cls in fields.items():
        assert model.model_fields[field].annotation is cls, (model.__name__, field)
