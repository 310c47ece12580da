"""Cross-architecture consistency: the answer-probability curves over relative depth are alike across models.

Claim: "Pattern holds across architectures: Layer evolution consistent across Llama 3, Mistral, and
Gemma" (project notes, key findings).

Definition: for each model run in the session, take every correctly answered completion or Q&A prompt,
interpolate the answer's lens probability on 20 evenly spaced relative depths (1/20 ... 1), and take
the median curve over prompts. Alike is measured by the Pearson correlation between two models' median
curves; the statistic is the smallest correlation over all pairs of models. The interval comes from
resampling each model's prompts (bootstrap, 95%). The claim holds if the interval lies at or above
0.7, is refuted if wholly below, and needs at least two models with enough prompts.
"""

import itertools

import numpy as np
import pytest

from findings.data import STATS, THRESHOLDS
from findings.evidence import output_top1
from findings.model_findings import ModelFindings
from suite.statistics import INCONCLUSIVE, Verdict, at_least

CLAIM = "cross_architecture"
pytestmark = pytest.mark.claim(CLAIM, number=11)

T = THRESHOLDS[CLAIM]


def curves(findings: ModelFindings, prompt_set: str) -> np.ndarray:
    """(prompts, grid) answer probability over relative depth, correctly answered prompts only."""
    grid = np.arange(1, T["grid"] + 1) / T["grid"]
    forms = findings.lens(prompt_set)
    rows = []
    for form in ("completion", "qa"):
        for fact, trace in zip(findings.facts(prompt_set), forms[form]):
            if output_top1(trace, fact.answer):
                depths = [lay.depth for lay in trace.layers]
                rows.append(np.interp(grid, depths, [lay.p_answer for lay in trace.layers]))
    return np.array(rows).reshape(-1, T["grid"])


def min_pairwise_correlation(median_curves: list[np.ndarray]) -> float:
    return min(float(np.corrcoef(a, b)[0, 1]) for a, b in itertools.combinations(median_curves, 2))


def evaluate(per_model: dict, prompt_set: str) -> Verdict | None:
    """The claim's verdict from each model's answer curves (None: fewer than two models with enough)."""
    usable = {name: c for name, c in per_model.items() if len(c) >= T["min_prompts"]}
    if len(usable) < 2:
        return None
    names = sorted(usable)
    observed = min_pairwise_correlation([np.median(usable[n], axis=0) for n in names])
    rng = np.random.default_rng(STATS["seed"])
    resampled = []
    for _ in range(STATS["resamples"]):
        medians = [np.median(c[rng.integers(0, len(c), len(c))], axis=0) for c in (usable[n] for n in names)]
        resampled.append(min_pairwise_correlation(medians))
    tail = (1 - STATS["confidence"]) / 2
    ci = (float(np.nanquantile(resampled, tail)), float(np.nanquantile(resampled, 1 - tail)))
    evidence = [
        {"pair": f"{a}~{b}", "correlation": float(np.corrcoef(np.median(usable[a], 0), np.median(usable[b], 0))[0, 1])}
        for a, b in itertools.combinations(names, 2)
    ] + [{"model": n, "prompts": len(usable[n]), "median_curve": [round(float(x), 4) for x in np.median(usable[n], 0)]}
         for n in names]
    return Verdict(
        claim=CLAIM, models=tuple(names), prompt_set=prompt_set,
        verdict=at_least(ci, T["min_correlation"]) if not np.isnan(observed) else INCONCLUSIVE,
        statistic="smallest pairwise correlation of median answer-probability curves",
        value=observed, ci=ci, rule=f"holds if the interval lies at or above {T['min_correlation']:g}",
        n=sum(len(usable[n]) for n in names), evidence=tuple(evidence),
    )


def test_cross_architecture(request, suite_session, model_names, prompt_set, judge):
    selected = {
        item.callspec.params["model_name"]
        for item in request.session.items
        if hasattr(item, "callspec") and "model_name" in item.callspec.params
    }
    per_model = {}
    for name in model_names:
        if name in selected:
            try:
                per_model[name] = curves(ModelFindings(suite_session.artefacts(name)), prompt_set)
            except pytest.skip.Exception:
                continue
    verdict = evaluate(per_model, prompt_set)
    if verdict is None:
        pytest.skip(f"needs at least two models with {T['min_prompts']}+ correctly answered prompts; "
                    f"this session has {sorted(per_model) or 'none'}")
    judge(verdict)
