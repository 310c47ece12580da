"""The project's pytest plugin: the --model option, one marker per model, and verdict recording.

Verdicts travel in `user_properties` (plain values), so they reach the controller under xdist too.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lens.errors import LensError
from lens.registry import registry, resolve
from lens.verdicts import Verdict

VERDICT_PROPERTY = "lens_verdict"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lens", "layer-by-layer findings")
    group.addoption(
        "--model", action="append", default=[], metavar="NAME_OR_PATH",
        help="run the findings on this model instead of the registry's (repeatable): "
        "a registry name, a Hub repo id, a local model folder or a .gguf file",
    )
    group.addoption(
        "--device", dest="lens_device", default=None,
        help="cpu, cuda, cuda:N or mps (default: mps > cuda > cpu); non-CPU devices are checked "
        "against the CPU first",
    )


def pytest_configure(config: pytest.Config) -> None:
    for spec in registry().values():
        config.addinivalue_line("markers", f"{spec.name}: findings on {spec.describe()}")
    for name in model_names(config):
        if name not in registry():
            config.addinivalue_line("markers", f"{name}: findings on the model given with --model")


def model_names(config: pytest.Config) -> list[str]:
    """The models the findings run on: those given with --model, else every registered one."""
    given = config.getoption("model", default=[])
    try:
        names = [resolve(value).name for value in given]
    except LensError as error:
        raise pytest.UsageError(f"--model: {error}") from None
    return names or list(registry())


def model_sources(config: pytest.Config) -> dict[str, str]:
    """Model name -> what to load for it (the --model value, or the registry name)."""
    given = config.getoption("model", default=[])
    return {resolve(value).name: value for value in given} or {name: name for name in registry()}


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Callable[[Verdict], None]:
    """Record a claim's verdict for the report."""

    def record(verdict: Verdict) -> None:
        request.node.user_properties.append((VERDICT_PROPERTY, verdict.to_dict()))

    return record
