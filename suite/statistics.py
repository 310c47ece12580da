"""Verdicts on claims: a statistic with an interval of honest coverage, and holds / refuted / inconclusive /
no data.

Shares get exact (Clopper-Pearson) intervals; other statistics a bootstrap that resamples facts, not
prompts (the forms of one fact are not independent). Generic over claims: a verdict names its claim,
models and prompt set as fields, never as a string to parse.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import beta, binom

HOLDS, REFUTED, INCONCLUSIVE, NO_DATA = "holds", "refuted", "inconclusive", "no data"


class ClaimNotHeld(AssertionError):
    """A claim's verdict is refuted or inconclusive (an expected failure where that is recorded)."""


class VerdictChanged(AssertionError):
    """A verdict differs from the recorded one (after a library upgrade, say): always a failure."""


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
    evidence: tuple[dict, ...] = field(default=())
    """Per-prompt figures behind the statistic."""
    confidence: float = 0.95
    """The interval's confidence level (above 0.95 where several secondary tests share the error rate)."""
    minimum_n: int = 1
    """Below this n the verdict is `no data` (from a power calculation at the claim's threshold)."""
    primary: bool = True
    """The claim's one primary test (the others are secondary, with their confidence adjusted)."""
    control: bool = False
    """The claim's control (e.g. another fact's answer followed instead), not the claim: it must not hold."""

    @property
    def figure(self) -> str:
        """The statistic, its value and interval in one line."""
        lo, hi = self.ci
        return f"{self.statistic} = {self.value:.3g} ({self.confidence:.1%} CI {lo:.3g} to {hi:.3g}, n={self.n})"

    @property
    def cell(self) -> str:
        """The verdict with its effect size and interval, for a verdict matrix."""
        if self.verdict == NO_DATA:
            return f"no data (n={self.n} < {self.minimum_n})"
        lo, hi = self.ci
        return f"{self.verdict} {self.value:.2f} [{lo:.2f}, {hi:.2f}] n={self.n}"

    @property
    def label(self) -> str:
        """The models, for messages: "smollm2", or "smollm2+gemma3" for a claim across models."""
        return "+".join(self.models)

    def to_dict(self) -> dict:
        """Plain values (JSON, xdist), with the one-line figure."""
        data = asdict(self)
        data["models"] = list(self.models)
        data["ci"] = list(self.ci)
        data["evidence"] = list(self.evidence)
        data["figure"] = self.figure
        data["cell"] = self.cell
        return data


def share_ci(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a share k/n; k and n may be fractional (an effective sample
    size, e.g. facts rather than prompts), where the beta quantiles still apply."""
    if n <= 0:
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    lo = float(beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return (lo, hi)


def min_n_for_share(threshold: float, alternative: float, power: float = 0.8, confidence: float = 0.95) -> int:
    """The fewest observations at which a true share of `alternative` gives an exact interval wholly
    above `threshold` with probability `power` (the claim's minimum n: fewer is no data)."""
    for n in range(1, 10_000):
        k = next((k for k in range(n + 1) if share_ci(k, n, confidence)[0] > threshold), None)
        if k is not None and binom.sf(k - 1, n, alternative) >= power:
            return n
    raise ValueError(f"no n up to 10000 tells {alternative} from {threshold}")


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
