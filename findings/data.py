"""The findings' data files: the facts and their prompts, the claims' settings, the recorded verdicts."""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lens.lenses.lenses import EXACT
from suite.recorded import Recorded

HERE = Path(__file__).parent
FORMS = ("completion", "qa", "reverse")
"""completion: "The capital of Germany is" -> Berlin; qa: "Question: ... Answer:" -> Berlin;
reverse: "Berlin is the capital of" -> Germany."""
CHAT = "chat"
"""An instruct model's own form: the Q&A prompt as the user's turn of its chat template, the answer read where
the assistant's reply begins (no leading space there). Built per model (lens.tokens.chat_prompt)."""


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
    aliases: str = ""
    """Other names the answer goes by, `;`-separated (Kiev for Kyiv): a reply that starts with one answers."""

    def prompt(self, form: str) -> str:
        return getattr(self, form)

    def spellings(self, form: str) -> tuple[str, ...]:
        """What a reply in `form` must start with to answer: the answer and its aliases (the subject, for
        the reverse form)."""
        if form == "reverse":
            return (self.subject,)
        return (self.answer, *(alias for alias in self.aliases.split(";") if alias))

    def target(self, form: str) -> str:
        """The word the prompt asks for, with the leading space the model would write (none at the start of
        a chat reply)."""
        if form == CHAT:
            return self.answer
        return f" {self.subject if form == 'reverse' else self.answer}"

    def other(self, form: str) -> str:
        """The word the prompt names (the subject of a forward prompt, the capital of a reverse one)."""
        return f" {self.answer if form == 'reverse' else self.subject}"


def _load_facts(path: Path) -> tuple[Fact, ...]:
    with path.open(newline="") as f:
        return tuple(Fact(**row) for row in csv.DictReader(f))


CAPITALS = "capitals"
FACTS = _load_facts(HERE / "facts.csv")
SETS = {CAPITALS: FACTS} | {path.stem: _load_facts(path) for path in sorted((HERE / "prompt_sets").glob("*.csv"))}
"""Prompt sets by name: the capitals (the notes' own kind of question) first, then prompt_sets/*.csv."""


def forms_of(prompt_set: str) -> tuple[str, ...]:
    """The forms a set has: every set has completion and Q&A; only some have a reverse form."""
    return FORMS if all(fact.reverse for fact in SETS[prompt_set]) else ("completion", "qa")


NOTES_FACT = next(fact for fact in FACTS if fact.origin == "notes")
"""The research notes' own fact (Germany); its Q&A form is their prompt."""
NOTES_PROMPT = NOTES_FACT.qa
"""The research notes' own prompt: "Question: What is the capital of Germany? Answer:"."""
THRESHOLDS = tomllib.loads((HERE / "claims.toml").read_text())
"""Per claim: the prompt sets it runs on and the numbers it is judged by; `statistics` for all."""
STATS = THRESHOLDS["statistics"]
EXPECTED = Recorded.load(HERE / "expected_verdicts.toml", tolerance=THRESHOLDS["tolerance"])
"""What was measured the last time verdicts were recorded."""


def lenses_of(claim: str, prompt_set: str | None = None) -> list[str]:
    """The lenses a claim is read through (claims.toml `lenses`; the exact logit lens unless it says more), on
    `prompt_set` where given (a lens besides the logit lens reads only the sets `[lenses]` names for it)."""
    declared = THRESHOLDS.get(claim, {}).get("lenses", [EXACT.name])
    return [
        lens
        for lens in declared
        if prompt_set is None or lens == EXACT.name or prompt_set in THRESHOLDS["lenses"].get(lens, [])
    ]


def prompt_sets_of(claim: str) -> list[str]:
    """The prompt sets a claim runs on (claims.toml; every set unless it says otherwise)."""
    return THRESHOLDS.get(claim, {}).get("prompt_sets", list(SETS))
