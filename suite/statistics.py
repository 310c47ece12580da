"""Verdicts on claims: a statistic with an interval of honest coverage, and holds / refuted / inconclusive /
no data.

Shares get exact (Clopper-Pearson) intervals; other statistics a bootstrap that resamples facts, not
prompts (the forms of one fact are not independent). Generic over claims: a verdict names its claim,
models and prompt set as fields, never as a string to parse.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from scipy.stats import beta, binom

from lens.lenses import EXACT

HOLDS, REFUTED, INCONCLUSIVE, TOO_FEW, NO_DATA = "holds", "refuted", "inconclusive", "too few", "no data"
"""The verdicts. `too few`: no outcome at that n could have decided (the interval can exclude nothing);
`no data`: n = 0. Every other verdict is decided by its interval against the claim's threshold."""


class ClaimNotHeld(AssertionError):
    """A claim's verdict is refuted or inconclusive (an expected failure where that is recorded)."""


class VerdictChanged(AssertionError):
    """A verdict differs from the recorded one (after a library upgrade, say): always a failure."""


EXACT_LENS = EXACT.name
"""The lens a verdict is read through unless it says otherwise: the exact logit lens."""


@dataclass(frozen=True)
class Verdict:
    """One claim judged on one model, with the figures that decided it. Plain values only, so it
    crosses process boundaries (xdist) and serializes to JSON as it is."""

    claim: str
    models: tuple[str, ...]
    """The model judged (one), or the models compared (a claim across models)."""
    prompt_set: str
    verdict: str
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
    evidence: tuple[dict, ...] = field(default=())
    """Per-prompt figures behind the statistic."""
    confidence: float = 0.95
    """The interval's confidence level (above 0.95 where several secondary tests share the error rate)."""
    primary: bool = True
    """The claim's one primary test (the others are secondary, with their confidence adjusted)."""
    control: bool = False
    """The claim's control (what the figure is where the claim's mechanism is absent), not the claim."""
    beside: tuple[dict, ...] = field(default=())
    """Figures reported beside the verdict, never deciding it: {"label", "value", "kind"} (a condition the
    notes do not state, a robustness view, the control's figure)."""
    caveats: tuple[str, ...] = field(default=())
    """What a reader must know to take the verdict as stated (a followed token that starts two answers;
    a control that shows the same effect)."""
    sensitivity: tuple[dict, ...] = field(default=())
    """The verdict under other reasonable thresholds: {"threshold", "value", "verdict", "figure"}."""
    detectable: float | None = None
    """The smallest true share (of prompts, or of facts beyond the threshold for a median) this n detects
    with the configured power: what the cell could have seen."""
    lens: str = EXACT_LENS
    """The lens the claim was read through (`lens.lenses`: "exact", the logit lens; "tuned")."""

    @property
    def figure(self) -> str:
        """The statistic, its value and interval in one line."""
        lo, hi = self.ci
        return f"{self.statistic} = {self.value:.3g} ({self.confidence:.1%} CI {lo:.3g} to {hi:.3g}, n={self.n})"

    @property
    def sensitive(self) -> bool:
        """Whether the verdict flips somewhere inside the thresholds' reasonable range."""
        return any(row["verdict"] != self.verdict for row in self.sensitivity)

    @property
    def cell(self) -> str:
        """The verdict with its effect size and interval, for a verdict matrix; † where a reasonable other
        threshold flips it, ‡ where a caveat applies."""
        marks = ("†" if self.sensitive else "") + ("‡" if self.caveats else "")
        if self.verdict == NO_DATA:
            return f"no data (n=0){marks}"
        lo, hi = self.ci
        return f"{self.verdict} {self.value:.2f} [{lo:.2f}, {hi:.2f}] n={self.n}{marks}"

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
        """"convergence_depth on smollm2 (capitals)", with the lens where it is not the logit lens."""
        lens = "" if self.lens == EXACT_LENS else f", {self.lens} lens"
        return f"{self.claim} on {self.label} ({self.prompt_set}{lens})"

    def to_dict(self) -> dict:
        """Plain values (JSON, xdist), with the one-line figure."""
        data = asdict(self)
        for name in ("models", "ci", "evidence", "beside", "caveats", "sensitivity"):
            data[name] = list(data[name])
        data["figure"] = self.figure
        data["cell"] = self.cell
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        """The verdict a `to_dict` came from (its derived `figure` and `cell` are derived again)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("models", "ci", "evidence", "beside", "caveats", "sensitivity"):
            if name in values:
                values[name] = tuple(values[name])
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


def family_error(verdicts: int, confidence: float = 0.95) -> tuple[float, float]:
    """For `verdicts` decided at `confidence` each: how many are expected to be decided wrongly by chance
    alone (whatever their dependence), and the chance that at least one is, were they independent."""
    alpha = 1 - confidence
    return verdicts * alpha, 1 - (1 - alpha) ** verdicts


def cluster_bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    statistic: Callable[[np.ndarray], float] = np.median,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`, resampling whole clusters (facts) with replacement,
    so values of one fact (its completion and Q&A prompts) move together (fixed seed: reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    groups = [np.flatnonzero(np.asarray([c == key for c in clusters])) for key in dict.fromkeys(clusters)]
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(0, len(groups), size=len(groups))
        stats[i] = statistic(data[np.concatenate([groups[g] for g in picked])])
    tail = (1 - confidence) / 2
    return (float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail)))


def at_least(ci: tuple[float, float], threshold: float) -> str:
    """holds if the whole interval is at or above the threshold, refuted if wholly below."""
    lo, hi = ci
    if lo >= threshold:
        return HOLDS
    if hi < threshold:
        return REFUTED
    return INCONCLUSIVE


def above(ci: tuple[float, float], threshold: float) -> str:
    """holds if the whole interval is strictly above the threshold, refuted if at or below it."""
    lo, hi = ci
    if lo > threshold:
        return HOLDS
    if hi <= threshold:
        return REFUTED
    return INCONCLUSIVE


def within(ci: tuple[float, float], band: tuple[float, float]) -> str:
    """holds if the interval lies inside the band, refuted if wholly outside it."""
    lo, hi = ci
    if band[0] <= lo and hi <= band[1]:
        return HOLDS
    if hi < band[0] or lo > band[1]:
        return REFUTED
    return INCONCLUSIVE
