"""What the claims read about one model: the lens over each prompt set (exact and raw, and the tuned lens where
a claim is read through it), the logit-lens grid of the notes' prompt, attention and patching. Each part is
computed the first time a selected test asks for it and kept for the run (on the suite session), so
`-k convergence` never pays for patching."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from findings.data import (
    CAPITALS,
    CHAT,
    FACTS,
    NOTES_FACT,
    NOTES_PROMPT,
    SETS,
    THRESHOLDS,
    Fact,
    forms_of,
)
from findings.evidence import partners
from lens.lenses.lenses import EXACT, RAW, Lens
from lens.lenses.registry import lens_for as registry_lens_for
from lens.models.model import LoadedModel, Model
from lens.progress import bar
from lens.reads.attention import AttentionFromLast, attention_from_last, token_positions
from lens.reads.generate import MAX_NEW_TOKENS, Continuation, continue_greedy
from lens.reads.grid import LensGrid, lens_grid
from lens.reads.patching import Patching, patch_many, patch_residuals
from lens.reads.records import Residuals, Trace, Wanted
from lens.reads.reduce import BATCH
from lens.reads.trace import collect, output_probabilities, read
from lens.remote import PATCHES_PER_JOB, continuation_bytes, lens_bytes
from lens.tokens import AnswerToken, after_lead, chat_prompt, followed_token, variants
from suite.results import ModelRecord
from suite.session import ModelArtefacts
from suite.store import digest, fingerprint, source_digest

Forms = dict[str, tuple[Trace, ...]]
"""form -> one trace per fact of the prompt set, in the set's order."""


@dataclass(frozen=True)
class Reading:
    """Where the lens reads one prompt and what it follows there, from the model's own continuation."""

    fact: Fact
    form: str
    prompt: str
    reply: Continuation
    answered: str | None
    """The spelling the model's reply starts with (the answer or an alias), None where it gives another."""
    lead_ids: tuple[int, ...]
    """What the lens reads after: the whitespace the model writes first, or, where it writes none and does
    not answer, the whitespace the answer itself starts with (" " before a split digit)."""
    followed: AnswerToken | None
    """The token followed at the read position: the model's own first token where it answers (a piece like
    " Bang" included), else the answer's first token there; None where the answer cannot be followed."""
    shared_with: tuple[str, ...] = ()
    """Other facts of the set whose answer starts with the followed token too (" K": Kairo, Kopenhagen)."""

    @property
    def own(self) -> AnswerToken | None:
        """The model's own first token that is not whitespace (None where it ends first)."""
        return self.reply.first

    @property
    def caveat(self) -> str | None:
        """Said beside a verdict that counts this prompt: its followed token starts other answers too."""
        if not self.shared_with:
            return None
        return f"{self.fact.id}: {self.followed.token!r} also starts {', '.join(self.shared_with)}"


@dataclass(frozen=True)
class Candidates:
    """A fact's followed token among the set's candidate answers at the output."""

    share: float
    """Its output probability over the candidates' total."""
    mass: float
    """The candidates' total output probability."""
    top: bool
    """Whether it is the most probable candidate."""


class ModelFindings:
    """One model's evidence for the claims, computed lazily."""

    def __init__(self, artefacts: ModelArtefacts, lens_name: str = EXACT.name) -> None:
        self.artefacts = artefacts
        self.lens_name = lens_name
        """The lens the claims read: "exact" (the logit lens), "tuned" or "jacobian" (claims.toml `lenses`)."""

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
        """Facts of the set this model's tokenizer cannot follow in some form, with the reason (an answer
        that is no word token where the lens reads). Listed in the report's data warnings."""

        def compute(model: LoadedModel) -> dict[str, str]:
            reasons: dict[str, str] = {}
            for form in forms_of(prompt_set):  # the chat form leaves out its own unfollowable facts only
                for reading in self.readings(prompt_set, form, every=True):
                    if reading.followed is None:
                        reasons.setdefault(
                            reading.fact.id,
                            f"{form}: the answer {reading.fact.target(form)!r} "
                            f"cannot be followed after {reading.prompt + reading.reply.lead!r}",
                        )
            return reasons

        return self.artefacts.get(("exclusions", prompt_set), compute)

    def facts(self, prompt_set: str) -> tuple[Fact, ...]:
        """The set's facts this model's claims are judged on (all but the excluded ones), in order."""
        excluded = self.exclusions(prompt_set)
        return tuple(fact for fact in SETS[prompt_set] if fact.id not in excluded)

    @property
    def chat(self) -> bool:
        """Whether the model is an instruct model, asked in its chat template too (models.toml `chat`)."""
        return self.artefacts.session.spec(self.name).chat

    def readings(self, prompt_set: str, form: str, every: bool = False) -> tuple[Reading, ...]:
        """Per usable fact of the set (with `every`, per fact), where the lens reads its prompt in `form`
        and what it follows there, from the model's own greedy continuation."""

        def compute(model: LoadedModel) -> tuple[Reading, ...]:
            facts = SETS[prompt_set]
            prompts = [_prompt(model, fact, form) for fact in facts]
            replies = continue_greedy(model, prompts, answers=[fact.spellings(form) for fact in facts])
            readings = [
                _reading(model.tokenizer, fact, form, prompt, reply)
                for fact, prompt, reply in zip(facts, prompts, replies)
            ]
            return tuple(_with_shared_starts(model.tokenizer, readings))

        every_fact = self.artefacts.get(("readings", prompt_set, form), compute)
        if every:
            return every_fact
        usable = {fact.id for fact in self.facts(prompt_set)}
        return tuple(reading for reading in every_fact if reading.fact.id in usable)

    def form_lens(self, prompt_set: str, form: str, lens: Lens | None = None) -> tuple[Trace, ...]:
        """Every usable fact's prompt in `form` through `lens` (None: the findings' own), read where the
        model's answer starts: the followed token, and (not the raw lens) the answer's spellings, the subject,
        another fact's subject (the control of claim 12) and the model's own first token."""
        lens = lens or self.lens_of()  # first: a lens the model has none of skips before anything is computed
        readings = self.readings(prompt_set, form)

        def compute(model: LoadedModel) -> tuple[Trace, ...]:
            residuals = self._residuals(prompt_set, form)
            watch = None if lens is RAW else self._watch(prompt_set, form)
            return tuple(read(model, residuals, [r.followed for r in readings], watch, lens=lens))

        # Kept under the lens itself (another lens, trained again, reads otherwise); the logit lens is code.
        identity = None if lens in (EXACT, RAW) else self._identity(lens)
        return self.artefacts.get(("lens", prompt_set, form, lens.name), compute, depends=identity)

    def lens_of(self) -> Lens:
        """The lens the findings read: the exact logit lens, or another the model has (`lens_for`). Never kept on
        disk (an 8B model's tuned lens is 2 GB): it comes from the model's lens files each run."""
        if self.lens_name == EXACT.name:
            return EXACT
        return self.artefacts.get((self.lens_name, "lens"), lambda model: lens_for(model, self.lens_name), keep=False)

    def _identity(self, lens: Lens) -> str:
        """A digest of a lens's matrices and source, once per run (its reads are kept under it)."""
        return self.artefacts.get((lens.name, "lens identity"), lambda model: fingerprint(lens), keep=False)

    def _watch(self, prompt_set: str, form: str) -> list[list[str | AnswerToken]]:
        """Per usable fact, what the exact lens watches besides the followed token. Spellings, subjects and the
        model's own token are followed through the exact lens only: ranking every watched token costs (layers x
        watched x vocabulary) per prompt, and no claim reads them raw."""
        control = partners(self.facts(prompt_set))
        context = THRESHOLDS["subject_before_answer"]["in_context"].get(prompt_set)
        return [
            [
                *variants(r.fact.target(form)),
                *variants(r.fact.other(form)),
                *variants(control[r.fact.id].other(form)),
                *(variants(f" {context}") if context else []),
                *self._translations(prompt_set, r.fact),
                *([r.own] if r.own else []),
            ]
            for r in self.readings(prompt_set, form)
        ]

    def _translations(self, prompt_set: str, fact: Fact) -> list[str]:
        """For the latent-English claim's prompt sets: the fact's English answer and another fact's (its control),
        as the model would write them after a space."""
        latent = THRESHOLDS["latent_english"]
        if prompt_set not in latent["prompt_sets"]:
            return []
        english = {f.id: f for f in self.facts(latent["english_from"])}  # as the claim reads them
        if fact.id not in english:
            return []
        other = partners(tuple(english.values()))[fact.id]
        return [f" {english[fact.id].answer}", f" {other.answer}"]

    def fidelity(self, prompt_set: str) -> dict[str, list[float]]:
        """Per form of the set, the findings' lens's mean KL(output || lens) in nats at each block, over the set's
        usable prompts where the lens reads them: how faithful the lens is on the prompts it judges."""
        return {
            form: [sum(t.layers[i].kl_to_output for t in traces) / len(traces) for i in range(traces[0].n_layers)]
            if traces
            else []
            for form, traces in self.lens(prompt_set).items()
        }

    def lens(self, prompt_set: str, lens: Lens | None = None) -> Forms:
        """`form_lens` for every form of the set (not the chat form)."""
        return {form: self.form_lens(prompt_set, form, lens) for form in forms_of(prompt_set)}

    def candidates(self, prompt_set: str, form: str) -> dict[str, Candidates]:
        """Per fact (by id): its followed token among the set's candidate answers at the output (every fact's
        followed token in this form, among those read after the same lead). A frame-free view beside the
        answer's own probability: a frame that spends its mass on " the" lowers every candidate, not the answer
        against the others; and a read of recall that does not depend on the reply's format."""
        readings = self.readings(prompt_set, form)

        def compute(model: LoadedModel) -> dict[str, Candidates]:
            ids = _candidate_ids(readings)
            probs = output_probabilities(self._residuals(prompt_set, form), ids)
            out = {}
            for r, row, p in zip(readings, ids, probs):
                if r.followed is None:
                    continue  # the chat form: an answer that cannot be followed at the start of a reply
                by_id = dict(zip(row, p))
                mass, own = sum(p), by_id[r.followed.token_id]
                out[r.fact.id] = Candidates(share=own / mass if mass > 0 else 0.0, mass=mass, top=own >= max(p))
            return out

        return self.artefacts.get(("candidates", prompt_set, form), compute)

    def _residuals(self, prompt_set: str, form: str) -> Residuals:
        """One forward pass over the set's usable prompts in `form`, each read where the model's answer starts;
        on NDIF the lens reduced there for every read the claims make (both lenses, the candidates). Not kept on
        disk (what is read from it is): block outputs and full-vocabulary output logits were 97% of the bytes kept
        for the embedded models (1.1 of 1.14 GB), and a rerun needs them only for a read not kept yet."""
        readings = self.readings(prompt_set, form)
        wanted = Wanted(
            answers=[r.followed for r in readings],
            lenses={EXACT.name: self._watch(prompt_set, form), RAW.name: None},
            output_ids=_candidate_ids(readings),
        )
        return self.artefacts.get(
            ("residuals", prompt_set, form),
            lambda model: collect(
                model,
                [r.prompt for r in readings],
                leads=[r.lead_ids for r in readings],
                backend=model.runs_through(self.artefacts.session.backend),
                wanted=wanted,
            ),
            keep=False,
        )

    def grid(self) -> LensGrid:
        """The logit-lens picture of the notes' own prompt."""
        return self.artefacts.get("grid", lambda model: lens_grid(model, NOTES_PROMPT))

    def attention(self) -> dict[str, AttentionFromLast]:
        """Per usable capital fact (by id), attention from the last position of its completion prompt."""
        facts = self.facts(CAPITALS)
        return self.artefacts.get(
            "attention",
            lambda model: {
                fact.id: attention_from_last(model, fact.completion)
                for fact in bar(facts, desc=f"{self.name}: attention over {len(facts)} facts", unit="fact")
            },
        )

    def subject_positions(self) -> dict[str, tuple[int, ...]]:
        """Per usable capital fact (by id), the positions of the subject's tokens in its completion prompt."""
        facts = self.facts(CAPITALS)
        return self.artefacts.get(
            "subject_positions",
            lambda model: {fact.id: tuple(token_positions(model, fact.completion, fact.subject)) for fact in facts},
        )

    def patching(self) -> dict[str, Patching | None]:
        """Per usable capital fact (by id) the model answers after its completion prompt, activation patching
        of that prompt into another fact's (None: no partner of the same token length), following the model's
        own first token. The facts the model does not answer are not patched: no claim reads them."""
        facts, subjects = self.facts(CAPITALS), self.subject_positions()
        answered = {
            r.fact.id: r.followed.token for r in self.readings(CAPITALS, "completion") if r.answered and not r.lead_ids
        }
        return self.artefacts.get("patching", lambda model: _patch_all(model, facts, subjects, answered))

    def notes_patching(self) -> Patching | None:
        """Patching of the notes' fact at every position (the figure), or None where it is left out."""
        facts = self.facts(CAPITALS)
        if NOTES_FACT not in facts:
            return None
        return self.artefacts.get(
            "notes_patching",
            lambda model: _patch(model, facts, facts.index(NOTES_FACT), NOTES_FACT.target("completion"), None),
        )

    def patched(self) -> Iterator[tuple[Fact, Patching, tuple[int, ...], Trace]]:
        """(fact, patching, subject positions, clean trace) for the facts patching can measure: answered,
        and the clean and corrupted probabilities at least `min_gap` apart."""
        clean = self.form_lens(CAPITALS, "completion")
        patchings, subjects = self.patching(), self.subject_positions()
        for fact, trace in zip(self.facts(CAPITALS), clean):
            patching = patchings.get(fact.id)
            if patching is not None and patching.p_clean - patching.p_corrupt >= THRESHOLDS["patching"]["min_gap"]:
                yield fact, patching, subjects[fact.id], trace


READ_SETTINGS = (("subject_before_answer", "in_context"), ("latent_english",))
"""The claims.toml settings the readings read (what the exact lens watches), beside the prompts: the rest judge
readings and never change one."""


def readings_depend() -> dict[str, str]:
    """What the readings depend on besides the model (`suite.store`): the code that computes them (this module and
    the data's), the prompts of every set and the settings they read."""
    settings = []
    for path in READ_SETTINGS:
        value: Any = THRESHOLDS
        for part in path:
            value = value.get(part, {})
        settings.append(value)
    prompts = {name: [vars(fact) for fact in facts] for name, facts in SETS.items()}
    return {
        "code": source_digest([Path(__file__), Path(__file__).with_name("data.py")]),
        "prompts": digest(prompts),
        "settings": digest(settings),
    }


def lens_for(model: Model, name: str) -> Lens:
    """A lens other than the logit lens for this model, as the lens registry builds it for a run
    (`lens.lenses.registry`: its tuned lens, published or trained here; TransformerLens's published Jacobian lens);
    the lens's `source` says which, and by what recipe. A lens the model cannot be read through (none here, or not
    on NDIF) skips, saying why."""

    def say(line: str) -> None:
        print(f"\n{line}", file=sys.stderr)

    return registry_lens_for(model, name, say)


def ndif_plan(chat: bool, model: Any, tests: list[str]) -> str:
    """What the selected tests (node ids) will ask of a model on NDIF, before anything is sent: the prompts of the
    prompt sets they run on in every form (the chat form for an instruct model), one job per batch for its own
    continuation and one for the lens, the grid and patching where selected, and about what comes back (the
    lens at most: 17 tokens followed through the exact lens, the answer through the raw one, the candidates)."""
    sets = [name for name in SETS if any(test.endswith(f"-{name}]") for test in tests)]
    prompts = jobs = back = 0
    for name in sets:
        n = len(SETS[name])
        for _ in (*forms_of(name), *([CHAT] if chat else [])):
            batches = -(-n // BATCH)
            prompts, jobs = prompts + n, jobs + 2 * batches
            back += batches * lens_bytes(model.n_layers, BATCH, {EXACT.name: 17, RAW.name: 1}, candidates=n)
            back += batches * continuation_bytes(BATCH, MAX_NEW_TOKENS)
    if CAPITALS in sets:
        jobs += 1  # the grid
    if any("patching" in test for test in tests):
        jobs += -(-len(FACTS) // PATCHES_PER_JOB) + 1  # the capitals answered, then the notes' fact everywhere
    return (
        f"the selected tests send {prompts} prompts in about {jobs} jobs, and at most about {back / 2**20:.1f} MB "
        "comes back; each phase says more before it sends, and every finished job is kept in the lens cache"
    )


def _candidate_ids(readings: tuple[Reading, ...]) -> list[list[int]]:
    """Per reading, the set's candidate answers where it is read: every followed token read after the same lead
    (sorted; none where its own answer cannot be followed)."""
    by_lead: dict[tuple[int, ...], set[int]] = {}
    for r in readings:
        if r.followed is not None:
            by_lead.setdefault(r.lead_ids, set()).add(r.followed.token_id)
    return [sorted(by_lead[r.lead_ids]) if r.followed is not None else [] for r in readings]


def _prompt(model: LoadedModel, fact: Fact, form: str) -> str:
    """The fact's prompt in `form`; the chat form in the model's own template."""
    return chat_prompt(model.tokenizer, fact.qa) if form == CHAT else fact.prompt(form)


def _reading(tokenizer, fact: Fact, form: str, prompt: str, reply: Continuation) -> Reading:
    """Where the lens reads the prompt and what it follows: see `Reading`."""
    answered = reply.spells(fact.spellings(form))
    if answered is not None:
        return Reading(fact, form, prompt, reply, answered, reply.lead_ids, reply.first)
    lead_ids, target = reply.lead_ids, after_lead(fact.target(form), reply.lead)
    followed = followed_token(tokenizer, prompt + reply.lead, target)
    if followed is not None and followed.lead:
        if lead_ids:  # whitespace after the model's own: not a token the model would write next
            followed = None
        else:  # the model writes no whitespace first; the answer would (" " before a split digit)
            lead_ids = tuple(tokenizer(prompt + followed.lead)["input_ids"][len(tokenizer(prompt)["input_ids"]) :])
            followed = replace(followed, lead="")
    return Reading(fact, form, prompt, reply, None, lead_ids, followed)


def _with_shared_starts(tokenizer, readings: list[Reading]) -> list[Reading]:
    """Each reading with the other facts whose answer starts with its followed token (read after the same
    lead): a caveat beside the verdicts that count it, never a silent exclusion."""
    starts: dict[tuple[tuple[int, ...], int], set[str]] = {}
    for r in readings:
        if r.followed is not None:
            answer = followed_token(
                tokenizer,
                r.prompt + tokenizer.decode(list(r.lead_ids)),
                after_lead(r.fact.target(r.form), tokenizer.decode(list(r.lead_ids))),
            )
            if answer is not None and not answer.lead:
                starts.setdefault((r.lead_ids, answer.token_id), set()).add(r.fact.target(r.form).strip())
    out = []
    for r in readings:
        shared = (
            ()
            if r.followed is None
            else tuple(sorted(starts.get((r.lead_ids, r.followed.token_id), set()) - {r.fact.target(r.form).strip()}))
        )
        out.append(replace(r, shared_with=shared))
    return out


def _patch_all(
    model: LoadedModel, facts: tuple[Fact, ...], subjects: dict[str, tuple[int, ...]], answers: dict[str, str]
) -> dict[str, Patching | None]:
    """Each fact of `answers` patched at its subject's positions and the last one, following its answer."""
    chosen = [(i, fact) for i, fact in enumerate(facts) if fact.id in answers]
    partner_of = {fact.id: _partner(model, facts, i) for i, fact in chosen}
    cases = [
        (fact.completion, partner_of[fact.id].completion, answers[fact.id], [*subjects[fact.id], -1])
        for _, fact in chosen
        if partner_of[fact.id] is not None
    ]
    done = iter(patch_many(model, cases, desc=f"{model.name}: patching {len(cases)} facts"))
    return {fact.id: next(done) if partner_of[fact.id] is not None else None for _, fact in chosen}


def _patch(
    model: LoadedModel, facts: tuple[Fact, ...], i: int, answer: str, positions: list[int] | None
) -> Patching | None:
    """Fact i's completion prompt patched into the next fact's of the same token length (None if none)."""
    partner = _partner(model, facts, i)
    return (
        None if partner is None else patch_residuals(model, facts[i].completion, partner.completion, answer, positions)
    )


def _partner(model: LoadedModel, facts: tuple[Fact, ...], i: int) -> Fact | None:
    """The next fact after fact i whose completion prompt has as many tokens and another answer (None if none)."""
    length = [len(model.tokenizer(f.completion)["input_ids"]) for f in facts]
    for j in [*range(i + 1, len(facts)), *range(i)]:
        if length[j] == length[i] and facts[j].answer != facts[i].answer:
            return facts[j]
    return None
