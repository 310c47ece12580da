"""The findings' data files: the facts and their prompts, the thresholds, the recorded verdicts."""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
FORMS = ("completion", "qa", "reverse")
"""completion: "The capital of Germany is" -> Berlin; qa: "Question: ... Answer:" -> Berlin;
reverse: "Berlin is the capital of" -> Germany."""


@dataclass(frozen=True)
class Fact:
    """One country-capital fact and its three prompts."""

    id: str
    subject: str
    answer: str
    origin: str
    """`notes` for the research notes' own prompt (Germany), `added` for the rest."""
    completion: str
    qa: str
    reverse: str

    def prompt(self, form: str) -> str:
        return getattr(self, form)

    def target(self, form: str) -> str:
        """The word the prompt asks for, with the leading space the model would write."""
        return f" {self.subject if form == 'reverse' else self.answer}"

    def other(self, form: str) -> str:
        """The word the prompt names (the subject of a forward prompt, the capital of a reverse one)."""
        return f" {self.answer if form == 'reverse' else self.subject}"


def _load_facts(path: Path) -> tuple[Fact, ...]:
    with path.open(newline="") as f:
        return tuple(Fact(**row) for row in csv.DictReader(f))


FACTS = _load_facts(HERE / "facts.csv")
SETS = {"capitals": FACTS} | {
    path.stem: _load_facts(path) for path in sorted((HERE / "prompt_sets").glob("*.csv"))
}
"""Prompt sets by name: the capitals (the notes' own kind of question) first, then prompt_sets/*.csv."""
CAPITALS = "capitals"


def forms_of(prompt_set: str) -> tuple[str, ...]:
    """The forms a set has: every set has completion and Q&A; only some have a reverse form."""
    return FORMS if all(fact.reverse for fact in SETS[prompt_set]) else ("completion", "qa")
NOTES_PROMPT = next(fact.qa for fact in FACTS if fact.origin == "notes")
"""The research notes' own prompt: "Question: What is the capital of Germany? Answer:"."""
THRESHOLDS = tomllib.loads((HERE / "thresholds.toml").read_text())
EXPECTED = tomllib.loads((HERE / "expected_verdicts.toml").read_text())
"""claim -> model -> {verdict, figure}: what was measured last time a verdict was recorded."""
