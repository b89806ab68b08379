"""The recorded numerical stack: what reproduces a run's draws besides its spec and seed."""
import platform
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
