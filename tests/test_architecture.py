"""The architecture map in docs/architecture.md cannot go stale: it lists exactly the package's
modules."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_module_and_only_those():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(densing_bayes/[\w/]+\.py)`", section))
    actual = {str(p.relative_to(ROOT)) for p in (ROOT / "densing_bayes").rglob("*.py")
              if p.name != "__init__.py" and "_bundled" not in p.parts}
    assert listed == actual, (f"missing from docs/architecture.md: {sorted(actual - listed)}; "
                              f"listed but absent: {sorted(listed - actual)}")


def test_layers_point_one_way():
    """data never imports model/inference/analysis/presentation; model never imports later layers."""
    later = {"data": ("model", "inference", "analysis", "presentation", "workflow"),
             "model": ("inference", "analysis", "presentation", "workflow"),
             "inference": ("analysis", "presentation", "workflow"),
             "analysis": ("presentation", "workflow")}
    # Batch analyses are many fits: they alone may call the one-fit workflow.
    batch_jobs = {"sensitivity.py", "calibration.py", "robustness.py"}
    for layer, forbidden in later.items():
        for path in (ROOT / "densing_bayes" / layer).glob("*.py"):
            text = path.read_text()
            for other in forbidden:
                if other == "workflow" and path.name in batch_jobs:
                    continue
                assert f"densing_bayes.{other}" not in text, f"{path.name} imports {other}"



def _imports_api(source: str) -> bool:
    """Whether a module imports densing_bayes.api (or the package's lazy public names)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "densing_bayes.api":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "densing_bayes" and any(
                a.name in ("api", "fit", "load", "load_data", "load_spec", "DensingFit")
                for a in node.names):
            return True
        if isinstance(node, ast.Import) and any(a.name in ("densing_bayes.api", "densing_bayes")
                                                for a in node.names):
            return True
    return False


def test_only_the_cli_imports_the_python_api():
    """The API sits on top of every layer: below it, only the CLI (a thin layer) may use it."""
    assert _imports_api("from densing_bayes import api")
    assert not _imports_api('"""densing_bayes.api"""')
    for path in (ROOT / "densing_bayes").rglob("*.py"):
        if path.name in ("api.py", "__init__.py", "cli.py"):
            continue
        assert not _imports_api(path.read_text()), f"{path.name} imports the Python API"
