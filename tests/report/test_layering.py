import ast
from pathlib import Path

import se_deploy

PKG = Path(se_deploy.__file__).parent


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_report_reads_results_and_imports_nothing_from_pipeline_or_commands():
    for path in sorted((PKG / "report").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(("se_deploy.pipeline", "se_deploy.commands", "se_deploy.cli"))}
        assert not bad, (path.name, bad)


def test_the_results_schema_does_not_reach_up_into_report():
    for name in ("results.py", "stats.py"):
        assert not {m for m in _imports(PKG / "bench" / name) if m.startswith("se_deploy.report")}, name
