"""The architecture map in README.md cannot go stale: it lists exactly the package's modules."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_module_and_only_those():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(densing_bayes/[\w/]+\.py)`", section))
    actual = {str(p.relative_to(ROOT)) for p in (ROOT / "densing_bayes").rglob("*.py")
              if p.name != "__init__.py" and "_bundled" not in p.parts}
    assert listed == actual, (f"missing from README: {sorted(actual - listed)}; "
                              f"listed but absent: {sorted(listed - actual)}")


def test_layers_point_one_way():
    """data never imports model/inference/analysis/presentation; model never imports later layers."""
    later = {"data": ("model", "inference", "analysis", "presentation", "workflow"),
             "model": ("inference", "analysis", "presentation", "workflow"),
             "inference": ("analysis", "presentation", "workflow"),
             "analysis": ("presentation", "workflow")}
    # Batch analyses are many fits: they alone may call the one-fit workflow.
    batch_jobs = {"sensitivity.py", "calibration.py"}
    for layer, forbidden in later.items():
        for path in (ROOT / "densing_bayes" / layer).glob("*.py"):
            text = path.read_text()
            for other in forbidden:
                if other == "workflow" and path.name in batch_jobs:
                    continue
                assert f"densing_bayes.{other}" not in text, f"{path.name} imports {other}"


def test_only_the_cli_imports_the_python_api():
    """The API sits on top of every layer: below it, only the CLI (a thin layer over it) may use it."""
    uses_api = re.compile(r"densing_bayes\.api\b|from densing_bayes import [\w, ]*\bapi\b|"
                          r"import densing_bayes as|densing_bayes\.(fit|load)\(")
    for path in (ROOT / "densing_bayes").rglob("*.py"):
        if path.name in ("api.py", "__init__.py", "cli.py"):
            continue
        assert not uses_api.search(path.read_text()), f"{path.name} imports the Python API"
