"""Results accumulate: what a run replaces and what it keeps (suite.merge), on hand-built results."""

from dataclasses import replace

import numpy as np

from suite.figures import DepthCurves, overlays
from suite.merge import merge
from suite.results import ClaimFigure, DataWarning
from tests.suite.built import result, results


def test_a_run_replaces_its_own_results_and_keeps_the_rest():
    previous = results(
        "mon",
        {
            "a": [result(["llama3"]), result(["mistral"]), result(["llama3"], "history")],
            "b": [result(["mistral"])],
        },
        warnings=(DataWarning("mistral", "capitals", "old"), DataWarning("llama3", "capitals", "gone")),
    )
    current = results(
        "tue", {"a": [result(["llama3"], label="refuted")]}, warnings=(DataWarning("llama3", "capitals", "new"),)
    )
    merged = merge(previous, current)
    a = {r.key[:2]: r.verdict.verdict for r in merged.claims["a"].results}
    assert a == {
        (("llama3",), "capitals"): "refuted",
        (("mistral",), "capitals"): "holds",
        (("llama3",), "history"): "holds",
    }
    assert merged.claims["b"] == previous.claims["b"]
    assert {m: run.date for m, run in merged.runs.items()} == {"llama3": "tue", "mistral": "mon"}
    assert {w.text for w in merged.warnings} == {"old", "new"}
    assert merged.models.keys() == {"llama3", "mistral"}


def test_a_claim_across_models_run_on_fewer_keeps_its_comparison_of_more():
    previous = results("mon", {"x": [result(["llama3", "mistral"])]})
    unjudged = results("tue", {"x": [result(["llama3"], label=None)]})
    assert merge(previous, unjudged).claims["x"].results == previous.claims["x"].results
    judged_again = results("wed", {"x": [result(["llama3", "mistral"], label="refuted")]})
    assert merge(previous, judged_again).claims["x"].results == judged_again.claims["x"].results


def test_figures_of_a_model_run_again_are_replaced_and_the_others_kept():
    def figure(model, p):
        return ClaimFigure("a", DepthCurves(model=model, name="answer-by-depth", depth=[1.0], p={"c": [[p]]}))

    previous = results(
        "mon", {"a": [result(["llama3"]), result(["mistral"])]}, figures=(figure("llama3", 0.1), figure("mistral", 0.2))
    )
    current = results("tue", {"a": [result(["llama3"])]}, figures=(figure("llama3", 0.9),))
    assert merge(previous, current).figures == (figure("mistral", 0.2), figure("llama3", 0.9))


def test_the_overlay_draws_each_models_median_curve():
    curves = [
        DepthCurves(
            model=m,
            name="answer-by-depth",
            depth=[0.5, 1.0],
            p={"completion": p},
            rank={"completion": [[1, 1]] * len(p)},
        )
        for m, p in (("a", [[0.1, 0.2], [0.3, 0.9], [0.2, 0.4]]), ("b", [[0.0, 1.0]]))
    ]
    [overlay] = overlays(curves + [DepthCurves(model="c", name="other")])
    assert overlay.median["a"]["completion"] == [0.2, 0.4]  # the medians of each depth's three prompts
    assert overlay.median["b"]["completion"] == [0.0, 1.0]
    assert overlay.depth == {"a": [0.5, 1.0], "b": [0.5, 1.0]} and np.isfinite(overlay.median["a"]["completion"]).all()


def test_a_run_through_one_lens_keeps_the_results_through_another():
    def tuned(found):
        return replace(found, lens="tuned", verdict=replace(found.verdict, lens="tuned"))

    previous = results("mon", {"a": [result(["llama3"]), tuned(result(["llama3"], label="refuted"))]})
    current = results("tue", {"a": [result(["llama3"], label="inconclusive")]})
    merged = {r.lens: r.verdict.verdict for r in merge(previous, current).claims["a"].results}
    assert merged == {"exact": "inconclusive", "tuned": "refuted"}
