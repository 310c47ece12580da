"""Verdicts on claims: a statistic with an interval of honest coverage, and holds / refuted / inconclusive /
no data.

Shares get exact (Clopper-Pearson) intervals; medians exact order-statistic intervals of per-fact values,
widened by half the measurement's resolution (depths come in steps of one block: ties never collapse the
interval to a point); other statistics a bootstrap that resamples facts, not prompts (the forms of one fact
are not independent). Each verdict carries the p-value of its decision, so the verdicts of one model and lens
can be adjusted together (Holm). Generic over claims: a verdict names its claim, models and prompt set as
fields, never as a string to parse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.stats import beta, binom
from statsmodels.stats.multitest import multipletests


class Label(StrEnum):
    """A verdict's word. `too few`: no outcome at that n could have decided (the interval can exclude nothing);
    `no data`: n = 0. Every other verdict is decided by its interval against the claim's threshold. A member is
    its string (JSON, TOML and the report write the word)."""

    HOLDS = "holds"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    TOO_FEW = "too few"
    NO_DATA = "no data"

    @property
    def decided(self) -> bool:
        """Whether the interval decided (holds or refuted), rather than leaving it open or having nothing to say."""
        return self in (Label.HOLDS, Label.REFUTED)


class ClaimNotHeld(AssertionError):
    """A claim's verdict is refuted or inconclusive (an expected failure where that is recorded)."""


class VerdictChanged(AssertionError):
    """A verdict differs from the recorded one (after a library upgrade, say): always a failure."""


EXACT_LENS = "exact"
"""The lens a verdict is read through unless it says otherwise: the exact logit lens (`lens.lenses.lenses.EXACT.name`,
written out here so that reading and rendering results imports no torch; tests/suite/test_statistics.py holds the
two equal)."""


@dataclass(frozen=True)
class Evidence:
    """One row of the evidence behind a verdict (a prompt, a fact): the fact it belongs to, the unit an interval
    resamples (None for a row about no one fact, e.g. a model's median curve), the claim's own figures by name
    (`row["settled_depth"]`: what a builder counts, a flag or a value), and the caveat a reader must know of it."""

    fact: str | None
    figures: dict[str, Any] = field(default_factory=dict)
    caveat: str | None = None

    def __getitem__(self, name: str) -> Any:
        """One of the claim's figures of this row."""
        return self.figures[name]

    def to_dict(self) -> dict:
        """One flat row, as findings.json keeps it: the fact, the figures, the caveat (each where there is one)."""
        return {
            **({"fact": self.fact} if self.fact is not None else {}),
            **self.figures,
            **({"caveat": self.caveat} if self.caveat is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Evidence:
        figures = dict(data)
        return cls(figures.pop("fact", None), figures, figures.pop("caveat", None))


@dataclass(frozen=True)
class Beside:
    """A figure reported beside a verdict, never deciding it (a condition the notes do not state, a robustness
    view, the control's figure, the lens's fidelity)."""

    label: str
    value: float
    """nan where there is none."""
    kind: str = "share"
    """What sort of figure it is (share, depth, log_ratio, kl, ...): its regression tolerance's key."""


@dataclass(frozen=True)
class Sensitivity:
    """A verdict judged again under one reasonable other value of one of its thresholds."""

    threshold: str
    value: Any
    verdict: Label
    figure: float
    """The statistic's value under that threshold."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Label(self.verdict))


@dataclass(frozen=True)
class Verdict:
    """One claim judged on one model, with the figures that decided it. Plain values only, so it
    crosses process boundaries (xdist) and serializes to JSON (`to_dict`)."""

    claim: str
    models: tuple[str, ...]
    """The model judged (one), or the models compared (a claim across models)."""
    prompt_set: str
    verdict: Label
    statistic: str
    """What `value` is, e.g. "median depth where the answer first is top-1"."""
    value: float
    ci: tuple[float, float]
    rule: str
    """The threshold it was judged by, e.g. "holds if the interval lies within [0.75, 0.90]"."""
    n: int
    """Facts (the effective sample size: a fact's prompts are not independent)."""
    kind: str = "share"
    """What sort of figure `value` is (share, depth, log_ratio, ...): its regression tolerance's key."""
    evidence: tuple[Evidence, ...] = field(default=())
    """Per-prompt (or per-fact) figures behind the statistic."""
    confidence: float = 0.95
    """The interval's confidence level (above 0.95 where several secondary tests share the error rate)."""
    primary: bool = True
    """The claim's one primary test (the others are secondary, with their confidence adjusted)."""
    control: bool = False
    """The claim's control (what the figure is where the claim's mechanism is absent), not the claim."""
    beside: tuple[Beside, ...] = field(default=())
    """Figures reported beside the verdict, never deciding it."""
    caveats: tuple[str, ...] = field(default=())
    """What a reader must know to take the verdict as stated (a followed token that starts two answers;
    a control that shows the same effect)."""
    sensitivity: tuple[Sensitivity, ...] = field(default=())
    """The verdict under other reasonable thresholds."""
    detectable: float | None = None
    """The smallest true share (of prompts, or of facts beyond the threshold for a median) this n detects
    with the configured power: what the cell could have seen."""
    lens: str = EXACT_LENS
    """The lens the claim was read through (`lens.lenses.registry`: "exact", the logit lens; "tuned")."""
    p: float | None = None
    """The two-sided p-value of the decision: 1 - the highest confidence at which the interval still decides
    (holds or refutes). What a multiplicity adjustment (Holm) reads; None where no interval was computed."""
    holm: Label | None = None
    """The verdict after Holm's adjustment over every verdict of the same model(s) and lens in the report
    (`holm_adjusted`): the same word where it survives, else inconclusive. None until adjusted."""
    exploratory: bool = False
    """A claim the notes list as a next step, not one they drew (claims.toml `exploratory`)."""
    interval: dict = field(default_factory=dict)
    """How the interval was computed, in plain values, so it can be recomputed at any confidence
    (`interval_at`) and checked from findings.json: {"method": "exact share", "k", "n"} or
    {"method": "order statistic", "values", "resolution"}; empty for a bootstrap."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Label(self.verdict))
        if self.holm is not None:
            object.__setattr__(self, "holm", Label(self.holm))

    @property
    def figure(self) -> str:
        """The statistic, its value and interval in one line."""
        lo, hi = self.ci
        return f"{self.statistic} = {self.value:.3g} ({self.confidence:.1%} CI {lo:.3g} to {hi:.3g}, n={self.n})"

    @property
    def sensitive(self) -> bool:
        """Whether the verdict flips somewhere inside the thresholds' reasonable range."""
        return any(row.verdict != self.verdict for row in self.sensitivity)

    @property
    def cell(self) -> str:
        """The verdict with its effect size and interval, for a verdict matrix; † where a reasonable other
        threshold flips it, ‡ where a caveat applies."""
        marks = ("†" if self.sensitive else "") + ("‡" if self.caveats else "")
        if self.verdict == Label.NO_DATA:
            return f"no data (n=0){marks}"
        lo, hi = self.ci
        holm = "" if self.holm is None else f", Holm: {'same' if self.holm == self.verdict else self.holm}"
        return f"{self.verdict} {self.value:.2f} [{lo:.2f}, {hi:.2f}] n={self.n}{holm}{marks}"

    @property
    def label(self) -> str:
        """The models, for messages: "smollm2", or "smollm2+gemma3" for a claim across models."""
        return "+".join(self.models)

    @property
    def recorded_as(self) -> str:
        """Its key among the recorded verdicts: the models, and the lens where it is not the logit lens
        ("smollm2", "smollm2@tuned")."""
        return self.label if self.lens == EXACT_LENS else f"{self.label}@{self.lens}"

    @property
    def where(self) -> str:
        """ "convergence_depth on smollm2 (capitals)", with the lens where it is not the logit lens."""
        lens = "" if self.lens == EXACT_LENS else f", {self.lens} lens"
        return f"{self.claim} on {self.label} ({self.prompt_set}{lens})"

    def to_dict(self) -> dict:
        """Plain values only (JSON; xdist, which sends no other types), with the one-line figure and cell."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data |= {
            "models": list(self.models),
            "ci": list(self.ci),
            "caveats": list(self.caveats),
            "verdict": self.verdict.value,
            "holm": self.holm.value if self.holm else None,
            "evidence": [row.to_dict() for row in self.evidence],
            "beside": [asdict(figure) for figure in self.beside],
            "sensitivity": [asdict(row) | {"verdict": row.verdict.value} for row in self.sensitivity],
            "interval": dict(self.interval),
            "figure": self.figure,
            "cell": self.cell,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        """The verdict a `to_dict` came from (its derived `figure` and `cell` are derived again)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values |= {
            "models": tuple(data["models"]),
            "ci": tuple(data["ci"]),
            "caveats": tuple(data.get("caveats", ())),
            "evidence": tuple(Evidence.from_dict(row) for row in data.get("evidence", ())),
            "beside": tuple(Beside(**figure) for figure in data.get("beside", ())),
            "sensitivity": tuple(Sensitivity(**row) for row in data.get("sensitivity", ())),
        }
        return cls(**values)


def share_ci(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a share k/n; k and n may be fractional (an effective sample
    size, e.g. facts rather than prompts), where the beta quantiles still apply."""
    if n <= 0:
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    lo = float(beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return (lo, hi)


def decidable(n: int, confidence: float, threshold: float = 0.5) -> bool:
    """Whether some outcome at n could give an exact interval that excludes `threshold`: all n on one side
    (a share against its threshold; a median against its threshold is a share of 0.5 of the facts)."""
    return n > 0 and (share_ci(n, n, confidence)[0] > threshold or share_ci(0, n, confidence)[1] < threshold)


def detectable_share(threshold: float, n: int, confidence: float = 0.95, power: float = 0.8) -> float | None:
    """The smallest true share at which n observations give an exact interval wholly above `threshold`
    with probability `power` (None: no share at this n can). Power is for planning, never a gate."""
    k = next((k for k in range(n + 1) if share_ci(k, n, confidence)[0] > threshold), None)
    if k is None:
        return None
    lo, hi = threshold, 1.0
    for _ in range(50):  # bisection: P(at least k of n) rises with the true share
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if binom.sf(k - 1, n, mid) >= power else (mid, hi)
    return hi


def min_n_for_share(threshold: float, alternative: float, power: float = 0.8, confidence: float = 0.95) -> int:
    """The fewest observations at which a true share of `alternative` gives an exact interval wholly
    above `threshold` with probability `power`: how many facts a prompt set needs (planning only)."""
    for n in range(1, 10_000):
        found = detectable_share(threshold, n, confidence, power)
        if found is not None and found <= alternative:
            return n
    raise ValueError(f"no n up to 10000 tells {alternative} from {threshold}")


def family_error(confidences: Sequence[float]) -> tuple[float, float]:
    """For verdicts decided (holds or refuted) at these confidences: how many are expected to be decided wrongly
    by chance alone (whatever their dependence), and the chance that at least one is, were they independent.
    A decision is directional (the interval wholly on one side), so each errs at most (1 - confidence) / 2."""
    errors = [(1 - c) / 2 for c in confidences]
    return float(sum(errors)), float(1 - np.prod([1 - e for e in errors]))


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down adjustment: which of a family's hypotheses stay rejected at family-wise error `alpha`."""
    if not p_values:
        return []
    return [bool(r) for r in multipletests(list(p_values), alpha=alpha, method="holm")[0]]


def decision_p(ci_at: Callable[[float], tuple[float, float]], decide: Callable[[tuple[float, float]], Label]) -> float:
    """The two-sided p-value of an interval's decision: 1 - the highest confidence at which the interval still
    holds or refutes (intervals at higher confidence contain those at lower, so the decision is monotone).
    1 where no confidence decides; found by bisection to 1e-6."""

    def decided(confidence: float) -> bool:
        return decide(ci_at(confidence)).decided

    low, high = 1e-6, 1 - 1e-9
    if not decided(low):
        return 1.0
    if decided(high):
        return 1 - high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if decided(middle) else (low, middle)
    return 1 - low


def per_cluster_medians(values: Sequence[float], clusters: Sequence[Hashable]) -> list[float]:
    """Each cluster's (fact's) median value, in first-seen order: the unit a median's interval resamples."""
    by: dict[Hashable, list[float]] = {}
    for value, cluster in zip(values, clusters):
        by.setdefault(cluster, []).append(float(value))
    return [float(np.median(group)) for group in by.values()]


def median_ci(values: Sequence[float], confidence: float = 0.95, resolution: float = 0.0) -> tuple[float, float]:
    """Exact (order-statistic) interval of a median from independent values: [x_(l), x_(n+1-l)] with l the
    largest rank whose binomial tail P(Bin(n, 1/2) < l) is at most (1 - confidence)/2. Its coverage holds for
    any distribution, ties included. Values measured in steps of `resolution` (a depth in blocks) stand for
    anything within half a step, so the interval is widened by that much each side; (-inf, inf) where n is too
    small for any rank."""
    data = np.sort(np.asarray(values, dtype=float))
    n = data.size
    if n == 0:
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    k = int(binom.ppf(tail, n, 0.5))
    while k >= 0 and binom.cdf(k, n, 0.5) > tail:
        k -= 1
    if k < 0:
        return (-math.inf, math.inf)
    half = resolution / 2
    return (float(data[k] - half), float(data[n - 1 - k] + half))


def interval_at(interval: dict, confidence: float) -> tuple[float, float]:
    """A verdict's interval (`Verdict.interval`) at another confidence."""
    if interval.get("method") == "exact share":
        return share_ci(interval["k"], interval["n"], confidence)
    if interval.get("method") == "order statistic":
        return median_ci(interval["values"], confidence, interval["resolution"])
    raise ValueError(f"no interval to recompute from {interval!r}")


def cluster_bootstrap(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    statistic: Callable[[np.ndarray], float] = np.median,
    resamples: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """The bootstrap distribution of `statistic`, resampling whole clusters (facts) with replacement, so values
    of one fact (its completion and Q&A prompts) move together (fixed seed: reproducible)."""
    data = np.asarray(values, dtype=float)
    groups = [np.flatnonzero(np.asarray([c == key for c in clusters])) for key in dict.fromkeys(clusters)]
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(0, len(groups), size=len(groups))
        stats[i] = statistic(data[np.concatenate([groups[g] for g in picked])])
    return stats


def percentile_ci(stats: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution."""
    if stats.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    return (float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail)))


def cluster_bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    statistic: Callable[[np.ndarray], float] = np.median,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`, resampling whole clusters (`cluster_bootstrap`)."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    return percentile_ci(cluster_bootstrap(values, clusters, statistic, resamples, seed), confidence)


def at_least(ci: tuple[float, float], threshold: float) -> Label:
    """holds if the whole interval is at or above the threshold, refuted if wholly below."""
    lo, hi = ci
    if lo >= threshold:
        return Label.HOLDS
    if hi < threshold:
        return Label.REFUTED
    return Label.INCONCLUSIVE


def above(ci: tuple[float, float], threshold: float) -> Label:
    """holds if the whole interval is strictly above the threshold, refuted if at or below it."""
    lo, hi = ci
    if lo > threshold:
        return Label.HOLDS
    if hi <= threshold:
        return Label.REFUTED
    return Label.INCONCLUSIVE


def within(ci: tuple[float, float], band: tuple[float, float]) -> Label:
    """holds if the interval lies inside the band, refuted if wholly outside it."""
    lo, hi = ci
    if band[0] <= lo and hi <= band[1]:
        return Label.HOLDS
    if hi < band[0] or lo > band[1]:
        return Label.REFUTED
    return Label.INCONCLUSIVE


def holm_adjusted(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Each verdict with its Holm-adjusted word (`Verdict.holm`). A family is every verdict of the same model(s)
    and lens (controls are not claims and stay out), at the family-wise error of its least stringent verdict
    (1 - the primary confidence); a decision that does not survive becomes inconclusive. `too few` and `no data`
    keep their word; a verdict without a p-value (from a results file older than them) is not adjusted."""
    families: dict[str, list[int]] = {}
    for i, verdict in enumerate(verdicts):
        if not verdict.control and verdict.p is not None and verdict.verdict not in (Label.NO_DATA, Label.TOO_FEW):
            families.setdefault(verdict.recorded_as, []).append(i)
    adjusted = [
        v
        if v.control or v.p is None and v.verdict != Label.NO_DATA
        else replace(v, holm=v.verdict if v.verdict in (Label.NO_DATA, Label.TOO_FEW) else Label.INCONCLUSIVE)
        for v in verdicts
    ]
    for members in families.values():
        alpha = 1 - min(verdicts[i].confidence for i in members)
        for i, kept in zip(members, holm([verdicts[i].p for i in members], alpha)):
            if kept and verdicts[i].verdict.decided:
                adjusted[i] = replace(adjusted[i], holm=verdicts[i].verdict)
    return adjusted
