"""The recorded numerical stack: what reproduces a run's draws besides its spec and seed."""
import platform
import subprocess
from importlib.metadata import version

from densing_bayes.inference import environment


def test_the_stack_names_every_distribution_that_decides_the_draws():
    stack = environment.numerical_stack()
    assert stack["python"] == platform.python_version()
    for name in ("numpy", "pytensor", "pymc", "nutpie", "numba", "arviz"):
        assert stack[name] == version(name)


def test_a_missing_distribution_is_said_to_be_missing(monkeypatch):
    monkeypatch.setattr(environment, "STACK", ("numpy", "no-such-distribution-xyz"))
    environment.numerical_stack.cache_clear()
    try:
        stack = environment.numerical_stack()
    finally:
        environment.numerical_stack.cache_clear()
    assert stack["no-such-distribution-xyz"] == "not installed"


def test_describe_is_one_line_and_says_when_nothing_was_recorded():
    line = environment.describe({"python": "3.11.7", "numpy": "2.4.6", "machine": "Linux x86_64"})
    assert line == "Python 3.11.7, numpy 2.4.6 (Linux x86_64)"
    assert environment.describe(None) == "-"


def _git(path, *args):
    subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)


def test_the_stack_names_the_commit_of_the_packages_code(tmp_path):
    """Same version, other commit: other draws. A commit (and whether the code differs from
    it) is recorded; outside a checkout, or untracked inside one, it is unknown."""
    repo = tmp_path / "repo"
    pkg = repo / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    assert environment.source_commit(pkg) == "unknown"  # not a git checkout
    _git(repo, "init", "-q")
    assert environment.source_commit(pkg) == "unknown"  # a checkout, but the file is untracked
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    assert environment.source_commit(pkg) == head
    (pkg / "__init__.py").write_text("x = 2\n")
    assert environment.source_commit(pkg) == head + "-dirty"
    assert "densing_bayes_commit" in environment.numerical_stack()
