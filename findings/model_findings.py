"""What the claims read about one model: the lens over each prompt set (exact, raw, other temperatures),
the logit-lens grid of the notes' prompt, attention and patching. Each part is computed the first time
a selected test asks for it and kept for the run (on the suite session), so `-k convergence` never
pays for patching."""

from __future__ import annotations

from collections.abc import Iterator

from findings.data import FACTS, NOTES_PROMPT, SETS, THRESHOLDS, Fact, forms_of
from findings.evidence import output_top1
from lens.attention import AttentionFromLast, attention_from_last, token_positions
from lens.grid import LensGrid, lens_grid
from lens.lenses import EXACT, Lens
from lens.loader import LoadedModel
from lens.patching import Patching, patch_residuals
from lens.tokens import variants
from lens.trace import Trace, collect, read_at
from suite.session import ModelArtefacts, ModelRecord

Forms = dict[str, tuple[Trace, ...]]
"""form -> one trace per fact of the prompt set, in the set's order."""


class ModelFindings:
    """One model's evidence for the claims, computed lazily."""

    def __init__(self, artefacts: ModelArtefacts) -> None:
        self.artefacts = artefacts

    @property
    def name(self) -> str:
        return self.artefacts.name

    @property
    def record(self) -> ModelRecord:
        """Where the model came from and how it ran (loads it if nothing was computed yet)."""
        self.artefacts.get("loaded", lambda model: True)
        assert self.artefacts.record is not None
        return self.artefacts.record

    def lens(self, prompt_set: str, lens: Lens = EXACT) -> Forms:
        """Every prompt of the set through `lens` at temperature 1, the answer and its spellings followed."""
        return self.tempered(prompt_set, (1.0,), lens)[1.0]

    def tempered(self, prompt_set: str, temperatures: tuple[float, ...], lens: Lens = EXACT) -> dict[float, Forms]:
        """The set's prompts read at several temperatures (one unembedding for all of them)."""
        cases = _cases(prompt_set)

        def read(model: LoadedModel) -> dict[float, Forms]:
            residuals = self.artefacts.get(("residuals", prompt_set),
                                           lambda m: collect(m, [fact.prompt(form) for form, fact in cases]))
            traces = read_at(
                model, residuals, temperatures,
                [fact.target(form) for form, fact in cases],
                [variants(fact.target(form)) + variants(fact.other(form)) for form, fact in cases],
                lens=lens,
            )
            return {t: _by_form(cases, ts) for t, ts in traces.items()}

        return self.artefacts.get(("lens", prompt_set, lens.name, temperatures), read)

    def grid(self) -> LensGrid:
        """The logit-lens picture of the notes' own prompt."""
        return self.artefacts.get("grid", lambda model: lens_grid(model, NOTES_PROMPT))

    def attention(self) -> tuple[AttentionFromLast, ...]:
        """Per capital fact, attention from the last position of its completion prompt."""
        return self.artefacts.get(
            "attention", lambda model: tuple(attention_from_last(model, fact.completion) for fact in FACTS)
        )

    def subject_positions(self) -> tuple[tuple[int, ...], ...]:
        """Per capital fact, the positions of the subject's tokens in its completion prompt."""
        return self.artefacts.get("subject_positions", lambda model: tuple(
            tuple(token_positions(model, fact.completion, fact.subject)) for fact in FACTS
        ))

    def patching(self) -> tuple[Patching | None, ...]:
        """Per capital fact, activation patching of its completion prompt into another fact's (None: no
        partner of the same token length)."""
        return self.artefacts.get("patching", _patch_all)

    def patched(self) -> Iterator[tuple[Fact, Patching, tuple[int, ...], Trace]]:
        """(fact, patching, subject positions, clean trace) for the facts patching can measure: answered
        top-1, and the clean and corrupted probabilities at least `min_gap` apart."""
        clean = self.lens("capitals")["completion"]
        for fact, patching, subject, trace in zip(FACTS, self.patching(), self.subject_positions(), clean):
            if (patching is not None and output_top1(trace, fact.answer)
                    and patching.p_clean - patching.p_corrupt >= THRESHOLDS["patching"]["min_gap"]):
                yield fact, patching, subject, trace


def _cases(prompt_set: str) -> list[tuple[str, Fact]]:
    """(form, fact) for every prompt of a set, form by form."""
    return [(form, fact) for form in forms_of(prompt_set) for fact in SETS[prompt_set]]


def _by_form(cases: list[tuple[str, Fact]], traces: list[Trace]) -> Forms:
    grouped: dict[str, list[Trace]] = {}
    for (form, _), one in zip(cases, traces):
        grouped.setdefault(form, []).append(one)
    return {form: tuple(ts) for form, ts in grouped.items()}


def _patch_all(model: LoadedModel) -> tuple[Patching | None, ...]:
    """Patch each fact's completion prompt into the next fact's of the same token length (None if none)."""
    length = [len(model.tokenizer(f.completion)["input_ids"]) for f in FACTS]

    def patch(i: int) -> Patching | None:
        for j in [*range(i + 1, len(FACTS)), *range(i)]:
            if length[j] == length[i] and FACTS[j].answer != FACTS[i].answer:
                return patch_residuals(model, FACTS[i].completion, FACTS[j].completion, FACTS[i].target("completion"))
        return None

    return tuple(patch(i) for i in range(len(FACTS)))
