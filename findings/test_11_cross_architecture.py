"""Cross-architecture consistency: the answer-probability curves over relative depth are alike across models.

Claim: "Pattern holds across architectures: Layer evolution consistent across Llama 3, Mistral, and
Gemma" (project notes, key findings).

Definition: like with like. The facts every model of the session answers in a common form (completion or
Q&A: its own continuation starts with the answer or an alias); per model and fact, the followed answer's
lens probability interpolated on 20 evenly spaced relative depths (1/20 ... 1), averaged over those common
forms, so each model contributes the same facts in the same forms. Alike is the Pearson correlation between
two models' median curves over the facts, from the first depth where either curve reaches 1% on (two curves
flat at zero over the early blocks would otherwise correlate through their shared zeros alone); the statistic
is the smallest correlation over all pairs of models. The interval resamples facts (the same facts for every
model; bootstrap, 95%); n counts facts, and every fact's curves are kept in the evidence. The claim holds if
the interval lies at or above 0.7, is refuted if wholly below, and needs two models.
"""

import functools
import itertools

import numpy as np
import pytest

from findings.evidence import RESAMPLING, scope, thresholds
from findings.model_findings import ModelFindings
from lens.lenses.lenses import EXACT
from suite.statistics import Evidence, Verdict, cluster_bootstrap, percentile_ci
from suite.verdicts import Rule, decided_verdict

CLAIM = "cross_architecture"
pytestmark = pytest.mark.claim(CLAIM, number=11)

FORMS = ("completion", "qa")


def answered_curves(findings: ModelFindings, prompt_set: str, grid: int) -> dict[tuple[str, str], np.ndarray]:
    """(fact id, form) -> the followed answer's probability over relative depth, for the prompts answered."""
    points = np.arange(1, grid + 1) / grid
    out = {}
    for form in FORMS:
        for reading, trace in zip(findings.readings(prompt_set, form), findings.form_lens(prompt_set, form)):
            if reading.answered is not None:
                depths = [lay.depth for lay in trace.layers]
                out[reading.fact.id, form] = np.interp(points, depths, [lay.p_answer for lay in trace.layers])
    return out


def min_pairwise_correlation(median_curves: list[np.ndarray], floor: float) -> float:
    """The smallest Pearson correlation over pairs of curves, each pair from the first point where either reaches
    `floor` (nan where fewer than three points remain, or a curve is constant there)."""

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        start = int(np.argmax((a >= floor) | (b >= floor))) if ((a >= floor) | (b >= floor)).any() else a.size
        a, b = a[start:], b[start:]
        if a.size < 3 or a.std() == 0 or b.std() == 0:
            return float("nan")
        return float(np.corrcoef(a, b)[0, 1])

    return min(correlation(a, b) for a, b in itertools.combinations(median_curves, 2))


def evaluate(
    per_model: dict[str, dict[tuple[str, str], np.ndarray]], prompt_set: str, t, lens: str = EXACT.name
) -> Verdict | None:
    """The claim's verdict from each model's answered curves through `lens` (None: fewer than two models)."""
    if len(per_model) < 2:
        return None
    names = sorted(per_model)
    facts = sorted({fact for fact, _ in set.intersection(*(set(c) for c in per_model.values()))})
    common = {fact: [form for form in FORMS if all((fact, form) in per_model[n] for n in names)] for fact in facts}
    curves = {
        n: np.array([np.mean([per_model[n][fact, form] for form in common[fact]], axis=0) for fact in facts])
        for n in names
    }

    def statistic(index: np.ndarray) -> float:
        return min_pairwise_correlation([np.median(curves[n][index.astype(int)], axis=0) for n in names], t["floor"])

    index = np.arange(len(facts), dtype=float)
    observed = statistic(index) if facts else float("nan")
    draws = cluster_bootstrap(index, facts, statistic, RESAMPLING.resamples, RESAMPLING.seed) if facts else np.empty(0)
    draws = draws[~np.isnan(draws)]  # a resample whose curves are flat has no correlation to count
    rows = [
        Evidence(
            fact, {"forms": common[fact], "curves": {n: [round(float(x), 4) for x in curves[n][i]] for n in names}}
        )
        for i, fact in enumerate(facts)
    ]
    rows += [
        Evidence(None, {"model": n, "median_curve": [round(float(x), 4) for x in np.median(curves[n], 0)]})
        for n in names
        if facts
    ]
    return decided_verdict(
        rows,
        value=observed,
        ci_at=lambda c: percentile_ci(draws, c),
        n=len(facts),
        rule=Rule("at_least", t["min_correlation"]),
        kind="correlation",
        statistic="smallest pairwise correlation of median answer-probability curves, facts every model answers",
        scope=scope(CLAIM, tuple(names), prompt_set, t, lens=lens),
        counted=rows[: len(facts)],
    )


def test_cross_architecture(request, suite_session, model_names, prompt_set, lens, judge_claim):
    selected = {
        item.callspec.params["model_name"]
        for item in request.session.items
        if hasattr(item, "callspec") and "model_name" in item.callspec.params
    }
    grid = thresholds(CLAIM, prompt_set)["grid"]
    per_model = {}
    for name in model_names:
        if name in selected:
            try:
                findings = ModelFindings(suite_session.artefacts(name), lens)
                per_model[name] = answered_curves(findings, prompt_set, grid)
            except pytest.skip.Exception:
                continue
    if len(per_model) < 2:
        pytest.skip(f"needs at least two models; this session has {sorted(per_model) or 'none'}")
    judge_claim(functools.partial(evaluate, lens=lens), per_model, prompt_set)
