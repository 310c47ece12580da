"""Results accumulate: what a run replaces and what it keeps (suite.merge), on hand-built results."""

import numpy as np

from suite import results as run_results
from suite.figures import DepthCurves, overlays
from suite.merge import merge
from suite.results import SCHEMA


def _result(models, prompt_set="capitals", verdict="holds"):
    return {"models": list(models), "prompt_set": prompt_set, "outcome": "passed" if verdict else "skipped",
            "verdict": {"verdict": verdict} if verdict else None}


def _results(date, claims, warnings=(), figures=()):
    runs = {m: {"date": date} for e in claims.values() for r in e["results"] for m in r["models"]}
    return {"schema": SCHEMA, "model_order": sorted(runs), "runs": runs, "models": {}, "checks": {},
            "claims": {c: {"number": i, "results": e["results"]} for i, (c, e) in enumerate(claims.items())},
            "warnings": list(warnings), "figures": list(figures), "changes": None}


def test_a_run_replaces_its_own_results_and_keeps_the_rest():
    previous = _results("mon", {
        "a": {"results": [_result(["llama3"]), _result(["mistral"]), _result(["llama3"], "history")]},
        "b": {"results": [_result(["mistral"])]},
    }, warnings=[{"model": "mistral", "prompt_set": "capitals", "text": "old"},
                 {"model": "llama3", "prompt_set": "capitals", "text": "gone"}])
    current = _results("tue", {"a": {"results": [_result(["llama3"], verdict="refuted")]}},
                       warnings=[{"model": "llama3", "prompt_set": "capitals", "text": "new"}])
    merged = merge(previous, current)
    a = {(tuple(r["models"]), r["prompt_set"]): r["verdict"]["verdict"] for r in merged["claims"]["a"]["results"]}
    assert a == {(("llama3",), "capitals"): "refuted", (("mistral",), "capitals"): "holds",
                 (("llama3",), "history"): "holds"}
    assert merged["claims"]["b"] == previous["claims"]["b"]
    assert merged["runs"] == {"llama3": {"date": "tue"}, "mistral": {"date": "mon"}}
    assert {w["text"] for w in merged["warnings"]} == {"old", "new"}


def test_a_claim_across_models_run_on_fewer_keeps_its_comparison_of_more():
    previous = _results("mon", {"x": {"results": [_result(["llama3", "mistral"])]}})
    unjudged = _results("tue", {"x": {"results": [_result(["llama3"], verdict=None)]}})
    assert merge(previous, unjudged)["claims"]["x"]["results"] == previous["claims"]["x"]["results"]
    judged_again = _results("wed", {"x": {"results": [_result(["llama3", "mistral"], verdict="refuted")]}})
    assert merge(previous, judged_again)["claims"]["x"]["results"] == judged_again["claims"]["x"]["results"]


def test_a_previous_run_in_another_layout_is_dropped():
    current = _results("tue", {"a": {"results": [_result(["llama3"])]}})
    assert merge({"schema": SCHEMA - 1, "claims": {"old": {}}}, current) is current


def test_the_overlay_draws_each_models_median_curve():
    curves = [DepthCurves(model=m, name="answer-by-depth", depth=[0.5, 1.0], p={"completion": p},
                          rank={"completion": [[1, 1]] * len(p)})
              for m, p in (("a", [[0.1, 0.2], [0.3, 0.9], [0.2, 0.4]]), ("b", [[0.0, 1.0]]))]
    [overlay] = overlays(curves + [DepthCurves(model="c", name="other")])
    assert overlay.median["a"]["completion"] == [0.2, 0.4]  # the medians of each depth's three prompts
    assert overlay.median["b"]["completion"] == [0.0, 1.0]
    assert overlay.depth == {"a": [0.5, 1.0], "b": [0.5, 1.0]} and np.isfinite(overlay.median["a"]["completion"]).all()


def test_a_run_stamps_only_the_models_it_produced_results_for():
    def record(models, claim="c", outcome="skipped"):
        return run_results.TestRecord(identity={"claim": claim, "number": 1, "title": "t", "doc": "", "module": "m",
                                    "test": "t", "models": models, "prompt_set": "capitals"},
                          outcome=outcome, message=None)
    # `-m llama3`: llama3's own claim ran; the claim across models was selected too but judged nothing.
    results = run_results.assemble([record(["llama3"], outcome="passed"), record(["llama3", "mistral"], claim="across")],
                       {"llama3": {"model": "llama3"}}, ["llama3", "mistral"], "pytest findings/ -m llama3")
    assert list(results["runs"]) == ["llama3"]
    assert results["claims"]["across"]["results"][0]["models"] == ["llama3"]
