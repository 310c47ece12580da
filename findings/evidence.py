"""Reading traces for the claims: which token is on top where, and turning per-prompt figures into verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from findings.data import SETS, STATS
from lens.tokens import variants
from lens.trace import Trace, Watched
from suite.statistics import INCONCLUSIVE, Verdict, above, bootstrap_ci


def forms_of(word: str, trace: Trace) -> list[Watched]:
    """The watched tokens that spell `word` (with/without leading space, capitalised)."""
    spellings = set(variants(word))
    return [w for w in trace.watched if w.text in spellings]


def top1_at(trace: Trace, word: str, layer: int) -> bool:
    """Whether any spelling of `word` is the lens's top token at `layer`."""
    return any(w.rank[layer] == 1 for w in forms_of(word, trace))


def first_top1(trace: Trace, word: str) -> int | None:
    """The first layer where any spelling of `word` is top-1, or None."""
    return next((i for i in range(trace.n_layers) if top1_at(trace, word, i)), None)


def output_top1(trace: Trace, word: str) -> bool:
    """Whether the model's own output puts any spelling of `word` on top."""
    return any(w.rank_output == 1 for w in forms_of(word, trace))


def depth(trace: Trace, layer: int | None) -> float | None:
    """The relative depth of a layer (None stays None)."""
    return None if layer is None else trace.layers[layer].depth


def share_verdict(
    claim: str, model: str, prompt_set: str, rows: Sequence[dict], flag: str, threshold: float, statistic: str
) -> Verdict:
    """A majority-style claim: the share of prompts whose `flag` is true, judged against `threshold`."""
    flags = [float(bool(row[flag])) for row in rows]
    return _verdict(
        claim, model, prompt_set, rows, flags, np.mean, lambda ci: above(ci, threshold),
        statistic, f"holds if the interval lies above {threshold:g}",
    )


def statistic_verdict(
    claim: str, model: str, prompt_set: str, rows: Sequence[dict], key: str,
    decide: Callable[[tuple[float, float]], str], rule: str, statistic: str,
) -> Verdict:
    """A claim about the median of one per-prompt figure."""
    values = [float(row[key]) for row in rows if row[key] is not None]
    return _verdict(claim, model, prompt_set, rows, values, np.median, decide, statistic, rule)


def _verdict(claim, model, prompt_set, rows, values, stat, decide, statistic, rule) -> Verdict:
    n = len(values)
    ci = bootstrap_ci(
        values, stat, STATS["confidence"], STATS["resamples"], STATS["seed"]
    ) if n else (float("nan"), float("nan"))
    enough = n >= STATS["min_prompts"]
    return Verdict(
        claim=claim,
        models=(model,),
        prompt_set=prompt_set,
        verdict=decide(ci) if enough else INCONCLUSIVE,
        statistic=statistic,
        value=float(stat(np.asarray(values))) if n else float("nan"),
        ci=ci,
        rule=rule if enough else f"{rule}; needs at least {STATS['min_prompts']} usable prompts",
        n=n,
        evidence=tuple(rows),
    )


def handover(patching, subject: tuple[int, ...]) -> tuple[int | None, list[float], list[float]]:
    """The first block where patching the last position restores more than patching the subject
    (its best token), with both restoration curves over blocks."""
    subject_curve = [max(row[p] for p in subject) for row in patching.restored]
    last_curve = [row[-1] for row in patching.restored]
    layer = next((i for i, (s, t) in enumerate(zip(subject_curve, last_curve)) if t > s), None)
    return layer, subject_curve, last_curve


def forward_prompts(forms: dict[str, tuple[Trace, ...]], prompt_set: str, answered: bool = False):
    """(prompt id, fact, trace) for the completion and Q&A prompts of a set, from its traces by form;
    with `answered`, only those whose output puts the answer top-1 (in any spelling)."""
    for form in ("completion", "qa"):
        for fact, trace in zip(SETS[prompt_set], forms[form]):
            if not answered or output_top1(trace, fact.answer):
                yield f"{fact.id}/{form}", fact, trace
