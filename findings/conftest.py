"""The findings' fixtures: which prompt sets each claim runs on (claims.toml), the model's evidence
(computed lazily on the suite session), and `judge`, which checks a verdict against the record."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from findings.data import EXPECTED, prompt_sets_of
from findings.model_findings import ModelFindings
from suite import recorded
from suite.session import ModelArtefacts
from suite.statistics import Verdict


@pytest.hookimpl(trylast=True)  # after the models: ids read model-set
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a claim over the prompt sets it runs on, declared once in claims.toml."""
    if "prompt_set" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("claim")
        if marker is None:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: a test over prompt sets must name its claim")
        metafunc.parametrize("prompt_set", prompt_sets_of(marker.args[0]))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Claims across models run last, after each model's own tests have computed what they read."""
    def across(item: pytest.Item) -> bool:
        return "model_names" in getattr(item, "fixturenames", ())

    items[:] = [item for item in items if not across(item)] + [item for item in items if across(item)]


@pytest.fixture
def findings(model_artefacts: ModelArtefacts) -> ModelFindings:
    """The model's evidence for the claims, each part computed when first read."""
    return ModelFindings(model_artefacts)


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> str:
    """The claim's id, from the module's `claim` marker."""
    return request.node.get_closest_marker("claim").args[0]


@pytest.fixture
def judge(request: pytest.FixtureRequest, record_verdict) -> Callable[[Verdict], None]:
    """Record a verdict, then assert the claim, against the recorded verdict where there is one."""
    return recorded.judge(request, EXPECTED, record_verdict)
