"""What the claims read about one model: the lens over each prompt set (exact and raw),
the logit-lens grid of the notes' prompt, attention and patching. Each part is computed the first time
a selected test asks for it and kept for the run (on the suite session), so `-k convergence` never
pays for patching."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from findings.data import CAPITALS, CHAT, NOTES_FACT, NOTES_PROMPT, SETS, THRESHOLDS, Fact, forms_of
from findings.evidence import output_top1, partners
from lens.attention import AttentionFromLast, attention_from_last, token_positions
from lens.errors import LensError
from lens.grid import LensGrid, lens_grid
from lens.lenses import EXACT, Lens
from lens.loader import LoadedModel
from lens.patching import Patching, patch_residuals
from lens.progress import bar
from lens.tokens import answer_token, chat_prompt, followed_token, variants
from lens.trace import Residuals, Trace, collect, read
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

    def exclusions(self, prompt_set: str) -> dict[str, str]:
        """Facts of the set this model's tokenizer cannot follow cleanly, with the reason: an answer that
        cannot be followed by a word token, or whose followed token is another fact's answer too."""
        return self.artefacts.get(("exclusions", prompt_set), lambda model: _exclusions(model, prompt_set))

    def facts(self, prompt_set: str) -> tuple[Fact, ...]:
        """The set's facts this model's claims are judged on (all but the excluded ones), in order."""
        excluded = self.exclusions(prompt_set)
        return tuple(fact for fact in SETS[prompt_set] if fact.id not in excluded)

    def lens(self, prompt_set: str, lens: Lens = EXACT) -> Forms:
        """Every prompt of the set's usable facts through `lens`: the answer followed, and (exact lens) its
        spellings, the subject and the control's answer."""
        cases = [(form, fact) for form in forms_of(prompt_set) for fact in self.facts(prompt_set)]
        control = partners(self.facts(prompt_set))

        def compute(model: LoadedModel) -> Forms:
            residuals = self.artefacts.get(("residuals", prompt_set), lambda m: self._collect(m, prompt_set))
            traces = read(
                model, residuals,
                [fact.target(form) for form, fact in cases],
                # Spellings, subject and control are followed through the exact lens only: ranking every
                # watched token costs (layers x watched x vocabulary) per prompt, and no claim reads them raw.
                [variants(fact.target(form)) + variants(fact.other(form)) + variants(control[fact.id].target(form))
                 if lens is EXACT else () for form, fact in cases],
                lens=lens,
            )
            return _by_form(cases, traces)

        return self.artefacts.get(("lens", prompt_set, lens.name), compute)

    @property
    def chat(self) -> bool:
        """Whether the model is an instruct model, asked in its chat template too (models.toml `chat`)."""
        return self.artefacts.session.spec(self.name).chat

    def candidates(self, prompt_set: str, form: str) -> dict[str, tuple[float, float]]:
        """Per fact (by id): the output probability of its answer normalised over the set's candidate
        answers (each candidate's followed token once), and the candidates' total probability mass (how
        much the model answers at all). Compares like with like across forms: a frame that spends its
        mass on " the" lowers every candidate, not the answer against the others. The chat form leaves
        out a fact whose answer cannot be followed at the start of a reply."""
        facts = self.facts(prompt_set)

        def compute(model: LoadedModel) -> dict[str, tuple[float, float]]:
            prompts = [_prompt(model, fact, form) for fact in facts]
            if form == CHAT:
                followable = [i for i, fact in enumerate(facts)
                              if followed_token(model.tokenizer, prompts[i], fact.target(form)) is not None]
                facts_, prompts_ = [facts[i] for i in followable], [prompts[i] for i in followable]
                logits = collect(model, prompts_, [fact.target(form) for fact in facts_],
                                 backend=self.artefacts.session.backend).output_logits
            else:
                residuals = self.artefacts.get(("residuals", prompt_set), lambda m: self._collect(m, prompt_set))
                start = forms_of(prompt_set).index(form) * len(facts)
                facts_, prompts_, logits = facts, prompts, residuals.output_logits[start : start + len(facts)]
            probs = torch.softmax(logits.float(), dim=-1)
            out = {}
            for fact, prompt, p in zip(facts_, prompts_, probs):
                own = answer_token(model.tokenizer, prompt, fact.target(form))
                others = (followed_token(model.tokenizer, prompt, other.target(form)) for other in facts)
                ids = {own.token_id} | {t.token_id for t in others if t is not None and t.lead == own.lead}
                mass = float(p[sorted(ids)].sum())
                out[fact.id] = (float(p[own.token_id]) / mass if mass > 0 else 0.0, mass)
            return out

        return self.artefacts.get(("candidates", prompt_set, form), compute)

    def _collect(self, model: LoadedModel, prompt_set: str) -> Residuals:
        """One forward pass over every prompt of the set's usable facts, form by form, each read where its
        answer comes next."""
        cases = [(form, fact) for form in forms_of(prompt_set) for fact in self.facts(prompt_set)]
        return collect(model, [fact.prompt(form) for form, fact in cases], [fact.target(form) for form, fact in cases],
                       backend=self.artefacts.session.backend)

    def grid(self) -> LensGrid:
        """The logit-lens picture of the notes' own prompt."""
        return self.artefacts.get("grid", lambda model: lens_grid(model, NOTES_PROMPT))

    def attention(self) -> dict[str, AttentionFromLast]:
        """Per usable capital fact (by id), attention from the last position of its completion prompt."""
        facts = self.facts(CAPITALS)
        return self.artefacts.get("attention", lambda model: {
            fact.id: attention_from_last(model, fact.completion)
            for fact in bar(facts, desc=f"{self.name}: attention over {len(facts)} facts", unit="fact")
        })

    def subject_positions(self) -> dict[str, tuple[int, ...]]:
        """Per usable capital fact (by id), the positions of the subject's tokens in its completion prompt."""
        facts = self.facts(CAPITALS)
        return self.artefacts.get("subject_positions", lambda model: {
            fact.id: tuple(token_positions(model, fact.completion, fact.subject)) for fact in facts
        })

    def patching(self) -> dict[str, Patching | None]:
        """Per usable capital fact (by id) the model answers top-1 after its completion prompt, activation
        patching of that prompt into another fact's (None: no partner of the same token length). The facts
        the model does not answer are not patched: no claim reads them."""
        facts, subjects = self.facts(CAPITALS), self.subject_positions()
        clean = self.lens(CAPITALS)["completion"]
        answered = {fact.id for fact, trace in zip(facts, clean) if output_top1(trace, fact.answer)}
        return self.artefacts.get("patching", lambda model: _patch_all(model, facts, subjects, answered))

    def notes_patching(self) -> Patching | None:
        """Patching of the notes' fact at every position (the figure), or None where it is left out."""
        facts = self.facts(CAPITALS)
        if NOTES_FACT not in facts:
            return None
        return self.artefacts.get("notes_patching", lambda model: _patch(model, facts, facts.index(NOTES_FACT), None))

    def patched(self) -> Iterator[tuple[Fact, Patching, tuple[int, ...], Trace]]:
        """(fact, patching, subject positions, clean trace) for the facts patching can measure: answered
        top-1, and the clean and corrupted probabilities at least `min_gap` apart."""
        clean = self.lens(CAPITALS)["completion"]
        patchings, subjects = self.patching(), self.subject_positions()
        for fact, trace in zip(self.facts(CAPITALS), clean):
            patching, subject = patchings.get(fact.id), subjects[fact.id]
            if (patching is not None and output_top1(trace, fact.answer)
                    and patching.p_clean - patching.p_corrupt >= THRESHOLDS["patching"]["min_gap"]):
                yield fact, patching, subject, trace


def _prompt(model: LoadedModel, fact: Fact, form: str) -> str:
    """The fact's prompt in `form`; the chat form in the model's own template."""
    return chat_prompt(model.tokenizer, fact.qa) if form == CHAT else fact.prompt(form)


def _exclusions(model: LoadedModel, prompt_set: str) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for form in forms_of(prompt_set):
        followed: dict[int, list[Fact]] = {}
        for fact in SETS[prompt_set]:
            try:
                token = answer_token(model.tokenizer, fact.prompt(form), fact.target(form))
            except LensError as error:
                reasons.setdefault(fact.id, f"{form}: {error}")
                continue
            followed.setdefault(token.token_id, []).append(fact)
        for token_id, facts in followed.items():
            if len({fact.target(form) for fact in facts}) > 1:
                names = ", ".join(fact.target(form).strip() for fact in facts)
                for fact in facts:
                    reasons.setdefault(fact.id, f"{form}: the followed token {model.tokenizer.decode([token_id])!r} "
                                                f"starts several answers ({names})")
    return reasons


def _by_form(cases: list[tuple[str, Fact]], traces: list[Trace]) -> Forms:
    grouped: dict[str, list[Trace]] = {}
    for (form, _), one in zip(cases, traces):
        grouped.setdefault(form, []).append(one)
    return {form: tuple(ts) for form, ts in grouped.items()}


def _patch_all(model: LoadedModel, facts: tuple[Fact, ...], subjects: dict[str, tuple[int, ...]],
               only: set[str]) -> dict[str, Patching | None]:
    """Each fact of `only` patched at its subject's positions and the last one."""
    chosen = [(i, fact) for i, fact in enumerate(facts) if fact.id in only]
    return {fact.id: _patch(model, facts, i, [*subjects[fact.id], -1])
            for i, fact in bar(chosen, desc=f"{model.name}: patching {len(chosen)} facts", unit="fact")}


def _patch(model: LoadedModel, facts: tuple[Fact, ...], i: int, positions: list[int] | None) -> Patching | None:
    """Fact i's completion prompt patched into the next fact's of the same token length (None if none)."""
    length = [len(model.tokenizer(f.completion)["input_ids"]) for f in facts]
    for j in [*range(i + 1, len(facts)), *range(i)]:
        if length[j] == length[i] and facts[j].answer != facts[i].answer:
            return patch_residuals(model, facts[i].completion, facts[j].completion, facts[i].target("completion"),
                                   positions)
    return None
