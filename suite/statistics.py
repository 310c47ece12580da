"""Verdicts on claims: a statistic over prompts, its bootstrap interval, and holds / refuted / inconclusive.

Generic over claims: a verdict names its claim, models and prompt set as fields, never as a string to parse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

HOLDS, REFUTED, INCONCLUSIVE = "holds", "refuted", "inconclusive"


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

    @property
    def figure(self) -> str:
        """The statistic, its value and interval in one line."""
        lo, hi = self.ci
        return f"{self.statistic} = {self.value:.3g} (95% CI {lo:.3g} to {hi:.3g}, n={self.n})"

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
        return data


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.median,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `values` (fixed seed: reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    stats = np.apply_along_axis(statistic, 1, samples)
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
