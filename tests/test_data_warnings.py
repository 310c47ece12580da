"""The data warnings (findings/conftest.py `_warn_of_data`), from hand-built readings through the findings' and the
suite's own fixtures, in a pytest run inside this one: after a test over a prompt set, each fact its model's
tokenizer made the suite leave out, and per form the replies at an edge (won by less than claims.toml's bfloat16
`reply_edge` over the tokens that decided their first word), each named with its margin; nothing for a form whose
replies are all clear, nor for a reading the test did not compute."""

from __future__ import annotations

import json

from findings.data import EXPECTED, SETS
from findings.model_findings import Reading
from lens.reads.generate import Continuation
from suite.keys import WARNING

pytest_plugins = ["pytester"]

EDGE = EXPECTED.tolerance_for("bfloat16")["reply_edge"]
GERMANY, FRANCE, ITALY, SPAIN = SETS["capitals"][:4]
LEFT_OUT = "qa: the answer 'Madrid' cannot be followed after 'Answer:'"


def reading(fact, form: str, margins: tuple[float, ...], deciding: int) -> Reading:
    """A reading whose reply was written with these margins, the first `deciding` of them deciding its first word."""
    reply = Continuation(
        prompt="", ids=(), text="", lead_ids=(), lead="", first=None, margins=margins, deciding=deciding
    )
    return Reading(fact=fact, form=form, prompt="", reply=reply, answered=None, lead_ids=(), followed=None)


COMPUTED = {
    ("exclusions", "capitals"): {SPAIN.id: LEFT_OUT},
    ("readings", "capitals", "completion"): (
        reading(GERMANY, "completion", (0.9, EDGE / 2), deciding=2),  # at the edge on its first word's 2nd token
        reading(FRANCE, "completion", (0.9, EDGE / 2), deciding=1),  # the near tie came after its first word
        reading(ITALY, "completion", (EDGE,), deciding=1),  # exactly the edge: not under it
        reading(SPAIN, "completion", (), deciding=0),  # no margin kept
    ),
    ("readings", "capitals", "qa"): tuple(reading(f, "qa", (0.5,), deciding=1) for f in (GERMANY, FRANCE)),
    ("readings", "capitals", "chat"): (reading(FRANCE, "chat", (EDGE / 4, 0.9), deciding=2),),
}
"""What the claims computed on a model over the capitals; the reverse form was not read."""


class HandBuilt:
    """A model's artefacts as `ModelArtefacts.peek` answers for them: only what the test computed."""

    def __init__(self) -> None:
        self.memo: dict = {}

    def peek(self, key):
        return self.memo.get(key)


INNER = """
import pytest
from tests.test_data_warnings import COMPUTED, HandBuilt

@pytest.fixture
def model_artefacts():
    return HandBuilt()

@pytest.mark.parametrize("prompt_set", ["capitals"])
def test_a_claim(model_artefacts, prompt_set):
    model_artefacts.memo.update(COMPUTED)  # computed while the test runs: the warnings are read after it
"""


def warnings_of(pytester) -> list[str]:
    """The data warnings the inner run's test recorded, each as the JSON the report reads."""
    pytester.makepyfile(test_hand_built=INNER)
    run = pytester.inline_run("-p", "suite.plugin", "-p", "findings.conftest", "-p", "no:cacheprovider")
    run.assertoutcome(passed=1)
    recorded = [
        value
        for report in run.getreports("pytest_runtest_logreport")
        for key, value in report.user_properties
        if key == WARNING
    ]
    assert all(warning["prompt_set"] == "capitals" for warning in recorded)
    return [json.dumps(warning) for warning in recorded]


def test_a_left_out_fact_and_each_forms_replies_at_an_edge_are_warned_of_once(pytester):
    warnings = warnings_of(pytester)
    assert EDGE > 0 and len(warnings) == 3, warnings

    def naming(text: str) -> list[str]:
        return [warning for warning in warnings if text in warning]

    (completion,) = naming(f"{GERMANY.id} ({EDGE / 2:.3f})")
    (chat,) = naming(f"{FRANCE.id} ({EDGE / 4:.3f})")
    (left_out,) = naming(LEFT_OUT)
    assert "completion" in completion and not any(fact.id in completion for fact in (FRANCE, ITALY, SPAIN))
    assert "chat" in chat and GERMANY.id not in chat
    assert SPAIN.id in left_out
