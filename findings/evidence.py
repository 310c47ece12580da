"""Reading traces for the claims: which token is on top where, which prompts the model answers, and each
claim's thresholds, scope and sensitivity from claims.toml (the verdicts themselves: suite.verdicts)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from findings.data import CAPITALS, STATS, THRESHOLDS, Fact, prompt_sets_of
from lens.lenses.lenses import EXACT, Lens
from lens.reads.records import Trace, Watched
from lens.tokens import variants
from suite.statistics import Evidence, Verdict
from suite.verdicts import (
    Resampling,
    Rule,
    Scope,
    beside,
    median_verdict,
    share_of,
    share_verdict,
    with_sensitivity,
)

RESAMPLING = Resampling(resamples=STATS["resamples"], seed=STATS["seed"], power=STATS["power"])


@dataclass(frozen=True)
class Prompt:
    """One prompt of a fact as the claims read it: its trace and where (and what) the lens followed."""

    id: str
    fact: Fact
    form: str
    trace: Trace
    reading: Any
    """findings.model_findings.Reading: the model's own continuation, whether it answers, the followed token."""

    @property
    def answered(self) -> bool:
        return self.reading.answered is not None

    def row(self, control: bool = False, **figures) -> Evidence:
        """A per-prompt evidence row: the fact (the resampling unit), the prompt, what was followed, the reply, the
        claim's `figures`, and the caveat of a followed answer token that starts another answer too (none for a
        control, which follows the token the model wrote)."""
        return Evidence(
            self.fact.id,
            {"prompt": self.id, "followed": self.trace.answer_token, "reply": self.reading.reply.text, **figures},
            None if control else self.reading.caveat,
        )


def forms_of_word(trace: Trace, word: str) -> list[Watched]:
    """The watched tokens that spell `word` (with/without leading space, capitalised), each counted only
    where it is a whole token in context: " rome" that starts with a bare " " never stands for Rome."""
    spellings = set(variants(word))
    return [w for w in trace.watched if w.text in spellings and w.whole]


def top1_at(trace: Trace, word: str, layer: int) -> bool:
    """Whether any spelling of `word` is the lens's top token at `layer`."""
    return any(w.rank[layer] == 1 for w in forms_of_word(trace, word))


def first_top1(trace: Trace, word: str) -> int | None:
    """The first layer where any spelling of `word` is top-1, or None."""
    return next((i for i in range(trace.n_layers) if top1_at(trace, word, i)), None)


def settled(ranks: Sequence[int]) -> int | None:
    """The first layer from which the token stays top-1 to the last layer, or None (a blip on top that is
    lost again does not count)."""
    layer = None
    for i in reversed(range(len(ranks))):
        if ranks[i] != 1:
            break
        layer = i
    return layer


def first_top1_of(ranks: Sequence[int]) -> int | None:
    """The first layer where the token is top-1, or None."""
    return next((i for i, rank in enumerate(ranks) if rank == 1), None)


@dataclass(frozen=True)
class Series:
    """One followed token through the layers: lens probability and rank per block, and at the output."""

    token: str
    p: tuple[float, ...]
    rank: tuple[int, ...]
    p_output: float
    rank_output: int


def answer_series(trace: Trace) -> Series:
    """The followed answer token (the model's own first token where it answers)."""
    return Series(
        trace.answer_token,
        tuple(lay.p_answer for lay in trace.layers),
        tuple(lay.rank_answer for lay in trace.layers),
        trace.output.p_answer,
        trace.output.rank_answer,
    )


def own_series(prompt: Prompt) -> Series | None:
    """The model's own first token (what it writes instead, where it does not answer), or None."""
    own = prompt.reading.own
    found = next((w for w in prompt.trace.watched if own is not None and w.token_id == own.token_id), None)
    return None if found is None else Series(found.token, found.p, found.rank, found.p_output, found.rank_output)


def claim_prompts(findings, prompt_set: str, control: str | None) -> Iterator[Prompt]:
    """The prompts claims 1-4 read: those the model answers; for their control, those it answers wrongly with
    a token that starts another fact's answer (another capital, another number: a wrong answer of the same
    type as the answers, never " the" or "A")."""
    if not control:
        yield from forward_prompts(findings, prompt_set, answered=True)
        return
    for form in ("completion", "qa"):
        starts: dict[tuple[tuple[int, ...], int], set[str]] = {}
        for reading in findings.readings(prompt_set, form):
            if reading.followed is not None:
                starts.setdefault((reading.lead_ids, reading.followed.token_id), set()).add(reading.fact.id)
        for prompt in forward_prompts(findings, prompt_set, answered=False, forms=(form,)):
            own = prompt.reading.own
            if own is not None and starts.get((prompt.reading.lead_ids, own.token_id), set()) - {prompt.fact.id}:
                yield prompt


WRONG_ANSWERS = ("wrong answers",)
"""The control of the claims that read `followed`: the prompts the model answers wrongly with another fact's answer."""


def followed(findings, prompt_set: str, control: str | None) -> Iterator[tuple[Prompt, Series]]:
    """What claims 1-4 read, prompt by prompt, with the token they follow through the layers: the answer on the
    prompts the model answers; for their control (`WRONG_ANSWERS`), the model's own token on the prompts it answers
    wrongly with another fact's answer (does the same pattern show where the model does not know?)."""
    for prompt in claim_prompts(findings, prompt_set, control):
        series = own_series(prompt) if control else answer_series(prompt.trace)
        if series is not None:
            yield prompt, series


def majority(
    claim: str,
    rows: Sequence[Evidence],
    flag: str,
    findings,
    prompt_set: str,
    t: Mapping[str, Any],
    control: str | None = None,
    *,
    statistic: str,
    figures: Sequence = (),
) -> Verdict:
    """A claim that holds where most rows show `flag` (its threshold `t["majority"]`): the share's verdict on one
    model's findings through their lens, at the confidence and with the resampling claims.toml sets."""
    return share_verdict(
        rows,
        flag=flag,
        threshold=t["majority"],
        statistic=statistic,
        scope=scope(claim, findings, prompt_set, t, control),
        resampling=RESAMPLING,
        figures=figures,
    )


def forward_prompts(
    findings,
    prompt_set: str,
    lens: Lens | None = None,
    answered: bool | None = None,
    forms: Sequence[str] = ("completion", "qa"),
) -> Iterator[Prompt]:
    """The completion and Q&A prompts of a set's usable facts, through `lens` (None: the findings' own);
    with `answered` True (False), only those whose own continuation gives (does not give) the answer or an
    alias."""
    for form in forms:
        for reading, trace in zip(findings.readings(prompt_set, form), findings.form_lens(prompt_set, form, lens)):
            prompt = Prompt(f"{reading.fact.id}/{form}", reading.fact, form, trace, reading)
            if answered is None or prompt.answered == answered:
                yield prompt


def partners(facts: Sequence[Fact]) -> dict[str, Fact]:
    """For each fact, the next fact in the set with another answer (the control of claim 12 follows its
    subject on this fact's prompts)."""
    out = {}
    for i, fact in enumerate(facts):
        out[fact.id] = next(
            (
                facts[(i + k) % len(facts)]
                for k in range(1, len(facts))
                if facts[(i + k) % len(facts)].answer != fact.answer
            ),
            fact,
        )
    return out


def depth(trace: Trace, layer: int | None) -> float | None:
    """The relative depth of a layer (None stays None)."""
    return None if layer is None else trace.layers[layer].depth


def level(claim: str, prompt_set: str) -> tuple[float, bool]:
    """The interval's confidence and whether this is the claim's primary test: the capitals are primary;
    the other prompt sets are secondary and share the error rate (Bonferroni over them)."""
    secondary = [s for s in prompt_sets_of(claim) if s != CAPITALS]
    if prompt_set == CAPITALS or not secondary:
        return STATS["confidence"], True
    return 1 - (1 - STATS["confidence"]) / len(secondary), False


def thresholds(claim: str, prompt_set: str, section: str | None = None) -> dict[str, Any]:
    """The numbers a claim is judged by (claims.toml; `section` where claims share one), with the
    interval's confidence for this prompt set."""
    found = {
        k: v
        for k, v in THRESHOLDS.get(section or claim, {}).items()
        if k not in ("sensitivity", "prompt_sets", "lenses", "exploratory", "reads")
    }
    return {**found, "confidence": level(claim, prompt_set)[0]}


def alternatives(claim: str, section: str | None = None) -> dict[str, list]:
    """The reasonable other values of each threshold (claims.toml `[claim.sensitivity]`), and of the
    confidence ([statistics] `sensitivity_confidence`)."""
    found = dict(THRESHOLDS.get(section or claim, {}).get("sensitivity", {}))
    return {**found, "confidence": STATS["sensitivity_confidence"]}


class Judged(Protocol):
    """What a verdict on one model is about: its name and the lens its findings are read through
    (`findings.model_findings.ModelFindings`)."""

    name: str
    lens_name: str


def scope(
    claim: str,
    about: Judged | tuple[str, ...],
    prompt_set: str,
    t: Mapping[str, Any],
    control: bool = False,
    lens: str = EXACT.name,
) -> Scope:
    """What a verdict is about (one model's findings, through their lens; or the models a claim across
    models compares, through `lens`), at the confidence `t` carries."""
    models, lens = (tuple(about), lens) if isinstance(about, tuple) else ((about.name,), about.lens_name)
    return Scope(
        claim=claim,
        models=models,
        prompt_set=prompt_set,
        confidence=t["confidence"],
        primary=level(claim, prompt_set)[1],
        control=bool(control),
        lens=lens,
        exploratory=THRESHOLDS.get(claim, {}).get("exploratory", False),
    )


def judged(evaluate: Callable[..., Verdict], claim: str, *args, section: str | None = None, **kwargs) -> Verdict:
    """`evaluate(*args, t, **kwargs)` under the claim's thresholds, with its verdict under each reasonable
    other threshold (`sensitivity`). `args` end with the prompt set."""
    prompt_set = args[-1]
    return with_sensitivity(
        lambda t: evaluate(*args, t, **kwargs), thresholds(claim, prompt_set, section), alternatives(claim, section)
    )


def paired_forms(findings, prompt_set: str, t: Mapping[str, Any], *, claim: str, better: str, worse: str) -> Verdict:
    """Whether form `better` gives the answer more probability than form `worse`, by at least `min_log_ratio`:
    per fact the log-ratio of the answer's output probabilities where the lens reads each (after the whitespace
    the model writes first), over the facts the model answers in at least one of the two forms (a fact it answers
    in neither tells nothing); the median log-ratio against the minimum. Two figures per fact: the raw ratio
    (the answer's own probability, what the notes read) and the frame-free one (normalised over the set's
    candidate answers: a frame that spends its mass on " the" lowers every candidate, not the answer against the
    others). `t["statistic"]` says which decides; the other stands beside it, with a caveat where the two part
    in direction or decision."""

    def by_fact(form):
        return {
            r.fact.id: (r, trace)
            for r, trace in zip(findings.readings(prompt_set, form), findings.form_lens(prompt_set, form))
        }

    high, low = by_fact(better), by_fact(worse)
    norm_high, norm_low = findings.candidates(prompt_set, better), findings.candidates(prompt_set, worse)
    rows = []
    for fact in findings.facts(prompt_set):
        if fact.id not in high or fact.id not in low or high[fact.id][0].followed is None:
            continue  # the chat form: an answer that cannot be followed at the start of a reply
        (r_high, t_high), (r_low, t_low) = high[fact.id], low[fact.id]
        p_high, p_low = t_high.output.p_answer, t_low.output.p_answer
        counted = (r_high.answered is not None or r_low.answered is not None) and p_high > 0 and p_low > 0
        n_high, n_low = norm_high[fact.id].share, norm_low[fact.id].share
        rows.append(
            Evidence(
                fact.id,
                {
                    f"reply_{better}": r_high.reply.text,
                    f"reply_{worse}": r_low.reply.text,
                    f"answers_{better}": r_high.answered is not None,
                    f"answers_{worse}": r_low.answered is not None,
                    f"p_{better}": p_high,
                    f"p_{worse}": p_low,
                    "log_ratio": math.log(p_high / p_low) if counted else None,
                    "normalised_log_ratio": math.log(n_high / n_low) if counted and n_high > 0 and n_low > 0 else None,
                },
                r_high.caveat or r_low.caveat,
            )
        )
    rule = Rule("above", t["min_log_ratio"])
    keys = {
        "raw": ("log_ratio", f"median ln(p_{better} / p_{worse}) of the answer, facts answered in either"),
        "normalised": (
            "normalised_log_ratio",
            f"median ln(p_{better} / p_{worse}) of the answer normalised "
            "over the set's candidate answers (frame-free), facts answered in either",
        ),
    }
    judged = {
        name: median_verdict(
            rows,
            key=key,
            rule=rule,
            kind="log_ratio",
            statistic=statistic,
            scope=scope(claim, findings, prompt_set, t),
            resampling=RESAMPLING,
        )
        for name, (key, statistic) in keys.items()
    }
    primary = judged[t["statistic"]]
    other = judged["normalised" if t["statistic"] == "raw" else "raw"]
    lo, hi = other.ci
    figures = [
        beside(
            f"{other.statistic} ({other.confidence:.1%} CI {lo:.2f} to {hi:.2f}): {other.verdict}",
            other.value,
            "log_ratio",
        )
    ]
    for form, norm in ((better, norm_high), (worse, norm_low)):
        masses = [norm[row.fact].mass for row in rows]
        figures += [
            beside(f"share of facts answered in the {form} form", share_of(rows, f"answers_{form}")),
            beside(
                f"median output share of the candidate answers ({form})", statistics.median(masses) if masses else None
            ),
        ]
    caveats = primary.caveats
    if other.verdict != primary.verdict or (primary.value > 0) != (other.value > 0):
        caveats = (
            *caveats,
            f"the {'frame-free' if t['statistic'] == 'raw' else 'raw'} ratio parts from it: "
            f"{other.value:.2f} ({other.verdict}) against {primary.value:.2f} ({primary.verdict})",
        )
    return replace(primary, beside=tuple(figures), caveats=caveats)


def with_fidelity(verdict: Verdict, findings, from_depth: float) -> Verdict:
    """The verdict with its lens's fidelity beside it: the largest mean KL(output || lens) on the set's prompts
    from `from_depth` (the claim's deciding depth) to the last block, over the judged forms; marked "lens not
    faithful here" where that exceeds claims.toml [fidelity] `bound`."""
    kl = findings.fidelity(verdict.prompt_set)
    depths = [lay.depth for lay in next(t for t in findings.lens(verdict.prompt_set).values() if t)[0].layers]
    worst = max(
        (values[i] for values in kl.values() if values for i, d in enumerate(depths) if d >= from_depth - 1e-9),
        default=math.nan,
    )
    bound = THRESHOLDS["fidelity"]["bound"]
    figures = (
        *verdict.beside,
        beside(f"lens fidelity: largest mean KL(output || lens) from {from_depth:.0%} of depth on, nats", worst, "kl"),
    )
    caveats = verdict.caveats
    if worst > bound:
        caveats = (
            *caveats,
            f"lens not faithful here: mean KL to the output up to {worst:.2f} nats from "
            f"{from_depth:.0%} of depth on (bound {bound:g})",
        )
    return replace(verdict, beside=figures, caveats=caveats)


def handover(patching, subject: tuple[int, ...]) -> tuple[int | None, list[float], list[float]]:
    """The first block where patching the last position restores more than patching the subject
    (its best token), with both restoration curves over blocks."""
    subject_curve = [max(values) for values in zip(*(patching.at(p) for p in subject))]
    last_curve = patching.at(-1)
    layer = next((i for i, (s, t) in enumerate(zip(subject_curve, last_curve)) if t > s), None)
    return layer, subject_curve, last_curve


def phase(depth_: float) -> str:
    """The notes' phase a relative depth falls in: early (<= 1/3), middle (<= 2/3) or final."""
    return "early" if depth_ <= 1 / 3 else "middle" if depth_ <= 2 / 3 else "final"
