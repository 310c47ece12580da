"""Reading traces for the claims: which token is on top where, and turning per-prompt figures into verdicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache

import numpy as np

from findings.data import CAPITALS, STATS, Fact, prompt_sets_of
from lens.lenses import EXACT, Lens
from lens.tokens import variants
from lens.trace import Trace, Watched
from suite.statistics import (
    INCONCLUSIVE,
    NO_DATA,
    Verdict,
    above,
    cluster_bootstrap_ci,
    min_n_for_share,
    share_ci,
)


def forms_of(word: str, trace: Trace) -> list[Watched]:
    """The watched tokens that spell `word` (with/without leading space, capitalised), each counted only
    where it is a whole token in context: " rome" that starts with a bare " " never stands for Rome."""
    spellings = set(variants(word))
    return [w for w in trace.watched if w.text in spellings and w.whole]


def top1_at(trace: Trace, word: str, layer: int) -> bool:
    """Whether any spelling of `word` is the lens's top token at `layer`."""
    return any(w.rank[layer] == 1 for w in forms_of(word, trace))


def first_top1(trace: Trace, word: str) -> int | None:
    """The first layer where any spelling of `word` is top-1, or None."""
    return next((i for i in range(trace.n_layers) if top1_at(trace, word, i)), None)


def settled_top1(trace: Trace, word: str) -> int | None:
    """The first layer from which some spelling of `word` stays top-1 to the last layer, or None (a
    blip on top that is lost again does not count)."""
    layer = None
    for i in reversed(range(trace.n_layers)):
        if not top1_at(trace, word, i):
            break
        layer = i
    return layer


def series(trace: Trace, word: str) -> Watched | None:
    """`word` followed through the layers: its first spelling (in `variants` order) that is a whole token
    here, e.g. " Berlin" after "is", "7" after "3 + 4 = "."""
    whole = {w.text: w for w in forms_of(word, trace)}
    return next((whole[v] for v in variants(word) if v in whole), None)


def as_control(verdict: Verdict) -> Verdict:
    """A verdict computed on shuffled answers, marked as the claim's control."""
    return replace(verdict, control=True, statistic=f"control, another fact's answer: {verdict.statistic}")


def partners(facts: Sequence[Fact]) -> dict[str, Fact]:
    """The shuffled-answer control: for each fact, the next fact in the set with another answer (the
    answer followed on this fact's prompts instead of its own)."""
    out = {}
    for i, fact in enumerate(facts):
        out[fact.id] = next((facts[(i + k) % len(facts)] for k in range(1, len(facts))
                             if facts[(i + k) % len(facts)].answer != fact.answer), fact)
    return out


def output_top1(trace: Trace, word: str) -> bool:
    """Whether the model's own output puts any spelling of `word` on top."""
    return any(w.rank_output == 1 for w in forms_of(word, trace))


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


@cache
def minimum_n(threshold: float, confidence: float) -> int:
    """Fewest facts that tell a share `detect` above the threshold from the threshold itself with the
    configured power (claims.toml [statistics]): below it a verdict is `no data`."""
    alternative = min(threshold + STATS["detect"], (1 + threshold) / 2)
    return min_n_for_share(threshold, alternative, STATS["power"], confidence)


def share_verdict(
    claim: str, model: str, prompt_set: str, rows: Sequence[dict], flag: str, threshold: float, statistic: str
) -> Verdict:
    """A majority-style claim: the share of rows whose `flag` is true, judged against `threshold` with an
    exact interval at the effective sample size, the number of facts (a fact's prompts are not independent)."""
    flags = [bool(row[flag]) for row in rows]
    n, facts = len(flags), len({row["fact"] for row in rows})
    confidence, primary = level(claim, prompt_set)
    share = sum(flags) / n if n else float("nan")
    ci = share_ci(share * facts, facts, confidence) if n else (float("nan"), float("nan"))
    return _verdict(claim, model, prompt_set, rows, share, ci, facts, minimum_n(threshold, confidence),
                    above(ci, threshold), statistic, f"holds if the interval lies above {threshold:g}",
                    confidence, primary)


def statistic_verdict(
    claim: str, model: str, prompt_set: str, rows: Sequence[dict], key: str,
    decide: Callable[[tuple[float, float]], str], rule: str, statistic: str,
) -> Verdict:
    """A claim about the median of one per-prompt figure, with a bootstrap interval that resamples facts.
    A median lies beyond a threshold when more than half the facts do: its minimum n is a share's at 0.5."""
    used = [row for row in rows if row[key] is not None]
    values, clusters = [float(row[key]) for row in used], [row["fact"] for row in used]
    confidence, primary = level(claim, prompt_set)
    ci = cluster_bootstrap_ci(values, clusters, np.median, confidence, STATS["resamples"], STATS["seed"])
    value = float(np.median(values)) if values else float("nan")
    return _verdict(claim, model, prompt_set, rows, value, ci, len(set(clusters)), minimum_n(0.5, confidence),
                    decide(ci) if values else INCONCLUSIVE, statistic, rule, confidence, primary)


def paired_forms_verdict(claim: str, findings, prompt_set: str, better: str, worse: str, floor: float,
                         statistic: str) -> Verdict:
    """Whether form `better` gives the answer more probability than form `worse`, like with like: per fact
    the log-ratio of candidate-normalised output probabilities, where the model answers at all in at least
    one of the forms (a fact never answered tells nothing; one answered in one form only is evidence);
    the median log-ratio against 0."""
    high, low = findings.candidates(prompt_set, better), findings.candidates(prompt_set, worse)
    rows = []
    for fact in findings.facts(prompt_set):
        if fact.id not in high or fact.id not in low:
            continue  # not followable in one of the forms (the chat form's reply start)
        (p_high, mass_high), (p_low, mass_low) = high[fact.id], low[fact.id]
        answers = max(mass_high, mass_low) >= floor and p_high > 0 and p_low > 0
        rows.append({"fact": fact.id, f"p_{better}": p_high, f"p_{worse}": p_low,
                     f"mass_{better}": mass_high, f"mass_{worse}": mass_low, "answers": answers,
                     "log_ratio": math.log(p_high / p_low) if answers else None})
    return statistic_verdict(claim, findings.name, prompt_set, rows, "log_ratio", lambda ci: above(ci, 0.0),
                             "holds if the interval lies above 0", statistic)


def _verdict(claim, model, prompt_set, rows, value, ci, n, minimum, decided, statistic, rule, confidence,
             primary) -> Verdict:
    return Verdict(
        claim=claim, models=(model,), prompt_set=prompt_set,
        verdict=decided if n >= minimum else NO_DATA,
        statistic=statistic, value=value, ci=ci,
        rule=f"{rule}; n counts facts; no data below {minimum} facts",
        n=n, evidence=tuple(rows), confidence=confidence, minimum_n=minimum, primary=primary,
    )


def handover(patching, subject: tuple[int, ...]) -> tuple[int | None, list[float], list[float]]:
    """The first block where patching the last position restores more than patching the subject
    (its best token), with both restoration curves over blocks."""
    subject_curve = [max(values) for values in zip(*(patching.at(p) for p in subject))]
    last_curve = patching.at(-1)
    layer = next((i for i, (s, t) in enumerate(zip(subject_curve, last_curve)) if t > s), None)
    return layer, subject_curve, last_curve


def forward_prompts(findings, prompt_set: str, answered: bool = False, lens: Lens = EXACT):
    """(prompt id, fact, trace) for the completion and Q&A prompts of a set's usable facts, through `lens`;
    with `answered`, only those whose output puts the answer top-1 (in any whole-token spelling)."""
    forms = findings.lens(prompt_set, lens)
    for form in ("completion", "qa"):
        for fact, trace in zip(findings.facts(prompt_set), forms[form]):
            if not answered or output_top1(trace, fact.answer):
                yield f"{fact.id}/{form}", fact, trace
