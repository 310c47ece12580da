"""Verdict builders: per-prompt rows in, a `Verdict` out, decided by its interval alone.

Generic over claims. A claim gives its rows, the flag or figure it judges, its `Rule` and its `Scope`
(claim, models, prompt set, confidence); the builders do the statistics (suite.statistics) the same way for
every claim: exact intervals for shares at the number of facts, a bootstrap resampling facts for medians,
`no data` only at n = 0, `too few` only where no outcome at that n could decide, and the p-value of each
decision (for the multiplicity adjustment). `with_sensitivity` judges a claim again under each reasonable other
threshold; `with_control` sets a claim beside its control and tests the difference between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from suite.statistics import (
    EXACT_LENS,
    Beside,
    Evidence,
    Label,
    Sensitivity,
    Verdict,
    above,
    at_least,
    decidable,
    decision_p,
    detectable_share,
    interval_at,
    per_cluster_medians,
    within,
)


@dataclass(frozen=True)
class Rule:
    """How an interval decides: `above` a threshold (strictly), `at_least` it, or `within` a band."""

    kind: str
    threshold: float | tuple[float, float]

    def decide(self, ci: tuple[float, float]) -> Label:
        if self.kind == "within":
            return within(ci, tuple(self.threshold))
        return (above if self.kind == "above" else at_least)(ci, float(self.threshold))

    @property
    def text(self) -> str:
        if self.kind == "within":
            lo, hi = self.threshold
            return f"holds if the interval lies within [{lo:g}, {hi:g}], refuted if wholly outside"
        word = "above" if self.kind == "above" else "at or above"
        return f"holds if the interval lies {word} {self.threshold:g}, refuted if wholly on the other side"


@dataclass(frozen=True)
class Scope:
    """What a verdict is about and at which confidence: the claim, the model(s), the prompt set."""

    claim: str
    models: tuple[str, ...]
    prompt_set: str
    confidence: float = 0.95
    primary: bool = True
    control: bool = False
    lens: str = EXACT_LENS
    """The lens the claim's figures were read through."""
    exploratory: bool = False
    """A claim the notes list as a next step, not one they drew."""


@dataclass(frozen=True)
class Resampling:
    """The bootstrap's settings and the power used to say what a cell could detect (claims.toml [statistics])."""

    resamples: int = 2000
    seed: int = 0
    power: float = 0.8


def beside(label: str, value: float | None, kind: str = "share") -> Beside:
    """A figure reported beside a verdict (never deciding it); nan where there is none."""
    return Beside(label, float("nan") if value is None else float(value), kind)


def share_of(rows: Sequence[Evidence], flag: str) -> float | None:
    """The share of rows whose `flag` is true (None without rows)."""
    return sum(bool(row[flag]) for row in rows) / len(rows) if rows else None


def share_verdict(
    rows: Sequence[Evidence],
    *,
    flag: str,
    threshold: float,
    statistic: str,
    scope: Scope,
    resampling: Resampling,
    figures: Sequence[Beside] = (),
) -> Verdict:
    """A majority-style claim: the share of rows whose `flag` is true, with an exact interval at the
    effective sample size, the number of facts (a fact's prompts are not independent)."""
    n = len({row.fact for row in rows})
    share = share_of(rows, flag)
    interval = {"method": "exact share", "k": share * n, "n": n} if rows else {}
    return decided_verdict(
        rows,
        value=math.nan if share is None else share,
        interval=interval,
        n=n,
        rule=Rule("above", threshold),
        statistic=statistic,
        scope=scope,
        kind="share",
        figures=figures,
        decided_at=threshold,
        detectable=detectable_share(threshold, n, scope.confidence, resampling.power) if n else None,
    )


def median_verdict(
    rows: Sequence[Evidence],
    *,
    key: str,
    rule: Rule,
    kind: str,
    statistic: str,
    scope: Scope,
    resampling: Resampling,
    figures: Sequence[Beside] = (),
    resolution: float = 0.0,
) -> Verdict:
    """A claim about the median of one figure over facts: each fact's median over its prompts (a fact's prompts
    are not independent), and the exact order-statistic interval of their median, widened by half the figure's
    `resolution` (a depth in blocks), so tied values never collapse it to a point. A median lies beyond a
    threshold when more than half the facts do: it is decidable where a share of 0.5 is, and what it could
    detect is said as that share."""
    used = [row for row in rows if row[key] is not None and not (isinstance(row[key], float) and math.isnan(row[key]))]
    per_fact = per_cluster_medians([float(row[key]) for row in used], [row.fact for row in used])
    n = len(per_fact)
    interval = {"method": "order statistic", "values": per_fact, "resolution": resolution} if per_fact else {}
    return decided_verdict(
        rows,
        value=float(np.median(per_fact)) if per_fact else math.nan,
        interval=interval,
        n=n,
        rule=rule,
        statistic=statistic,
        scope=scope,
        kind=kind,
        figures=figures,
        detectable=detectable_share(0.5, n, scope.confidence, resampling.power) if n else None,
        decided_at=0.5,
        counted=used,
    )


def decided_verdict(
    rows: Sequence[Evidence],
    *,
    value: float,
    n: int,
    rule: Rule,
    statistic: str,
    scope: Scope,
    kind: str,
    interval: dict | None = None,
    ci_at: Callable[[float], tuple[float, float]] | None = None,
    figures: Sequence[Beside] = (),
    detectable: float | None = None,
    decided_at: float = 0.5,
    counted: Sequence[Evidence] | None = None,
) -> Verdict:
    """A verdict from a statistic's value and its interval at any confidence (`interval`, recomputable from
    plain values, or `ci_at`, e.g. a bootstrap's quantiles) over n facts: `no data` at n = 0, `too few` where no
    outcome at n could exclude `decided_at` (a share's threshold; 0.5 for a median), else the rule's word at the
    scope's confidence, with the p-value of that decision. `counted`: the rows behind the figure where not all
    `rows` are (their caveats are the verdict's)."""
    if ci_at is None:
        ci_at = (lambda c: interval_at(interval, c)) if interval else (lambda c: (math.nan, math.nan))
    ci = ci_at(scope.confidence)
    p = None if n == 0 else decision_p(ci_at, rule.decide)
    if n == 0:
        decided = Label.NO_DATA
    elif not decidable(n, scope.confidence, decided_at):
        decided = Label.TOO_FEW
    else:
        decided = rule.decide(ci)
    counted = rows if counted is None else counted
    caveats = sorted({row.caveat for row in counted if row.caveat})
    return Verdict(
        claim=scope.claim,
        models=scope.models,
        prompt_set=scope.prompt_set,
        verdict=decided,
        statistic=statistic,
        value=value,
        ci=tuple(ci),
        rule=f"{rule.text}; n counts facts ({len(counted)} rows)",
        n=n,
        kind=kind,
        evidence=tuple(rows),
        confidence=scope.confidence,
        primary=scope.primary,
        control=scope.control,
        beside=tuple(figures),
        caveats=(_shared_starts(caveats),) if caveats else (),
        detectable=detectable,
        lens=scope.lens,
        p=p,
        exploratory=scope.exploratory,
        interval=interval or {},
    )


def _shared_starts(caveats: Sequence[str], shown: int = 3) -> str:
    """One caveat for the rows whose followed token starts another fact's answer too (a few named; every
    row says its own in the evidence)."""
    more = f"; {len(caveats) - shown} more in the evidence rows" if len(caveats) > shown else ""
    return f"{len(caveats)} followed token(s) start another fact's answer too: " + "; ".join(caveats[:shown]) + more


def with_sensitivity(
    evaluate: Callable[[Mapping[str, Any]], Verdict],
    thresholds: Mapping[str, Any],
    alternatives: Mapping[str, Sequence[Any]],
) -> Verdict:
    """The claim judged under `thresholds`, carrying its verdict under each reasonable other value of each
    threshold (one changed at a time): where it flips inside that range, the cell says so."""
    verdict = evaluate(thresholds)
    rows = []
    for name, values in alternatives.items():
        for value in values:
            if value == thresholds.get(name):
                continue
            other = evaluate({**thresholds, name: value})
            rows.append(Sensitivity(name, value, other.verdict, other.value))
    return replace(verdict, sensitivity=tuple(rows))


def with_control(verdict: Verdict, control: Verdict) -> Verdict:
    """The claim's verdict with its control's figure beside it, and a caveat where the control holds too (then
    what the claim sees is there without its mechanism as well) or holds where the claim does not (the pattern
    belongs to the control's prompts or token more than to the claim's)."""
    figures = (*verdict.beside, beside(f"control: {control.statistic}", control.value, control.kind))
    caveats = verdict.caveats
    if control.verdict == Label.HOLDS and verdict.verdict == Label.HOLDS:
        caveats = (*caveats, f"the control holds too ({control.figure}): not specific to the claim's mechanism")
    elif control.verdict == Label.HOLDS:
        caveats = (*caveats, f"the control holds where the claim does not ({control.figure})")
    return replace(verdict, beside=figures, caveats=caveats)


def difference_verdict(verdict: Verdict, control: Verdict, sign: int = 1) -> Verdict:
    """Whether the claim's figure exceeds its control's: sign * (claim - control) above 0. Its interval joins the
    two exact intervals, each at (1 + confidence) / 2, as [lo_a - hi_b, hi_a - lo_b] (Bonferroni: at least the
    stated coverage, whatever the dependence between the two, paired or not)."""

    def ci_at(confidence: float) -> tuple[float, float]:
        both = (1 + confidence) / 2
        (a_lo, a_hi), (b_lo, b_hi) = interval_at(verdict.interval, both), interval_at(control.interval, both)
        return (a_lo - b_hi, a_hi - b_lo) if sign > 0 else (b_lo - a_hi, b_hi - a_lo)

    n = min(verdict.n, control.n)
    rule = Rule("above", 0.0)
    if n == 0 or not verdict.interval or not control.interval:
        ci, decided, p = (math.nan, math.nan), Label.NO_DATA, None
    else:
        ci = ci_at(verdict.confidence)
        decided, p = rule.decide(ci), decision_p(ci_at, rule.decide)
    which = "claim - control" if sign > 0 else "control - claim"
    return Verdict(
        claim=verdict.claim,
        models=verdict.models,
        prompt_set=verdict.prompt_set,
        verdict=decided,
        statistic=f"{which}: {verdict.statistic}",
        value=sign * (verdict.value - control.value),
        ci=tuple(ci),
        rule=f"{rule.text}; n is the smaller of the two",
        n=n,
        kind=verdict.kind,
        confidence=verdict.confidence,
        primary=False,
        control=True,
        lens=verdict.lens,
        p=p,
        exploratory=verdict.exploratory,
    )
