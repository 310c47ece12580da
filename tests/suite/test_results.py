"""suite.results: every typed record comes back from JSON as it went in (nan included), and `assemble`
groups a run's test records by claim, models and prompt set."""

import json
import math
from dataclasses import replace

from suite.figures import DepthCurves
from suite.provenance import Commit
from suite.results import (
    EDGE,
    LEFT_OUT,
    ClaimFigure,
    DataWarning,
    Expected,
    Identity,
    ModelRecord,
    Outcome,
    Result,
    Results,
    Run,
    TestRecord,
    assemble,
)
from suite.statistics import Beside, Evidence, Label, Sensitivity, Verdict
from tests.suite.built import result, results, run, verdict

FULL = Verdict(
    claim="c",
    models=("a", "b"),
    prompt_set="s",
    verdict=Label.INCONCLUSIVE,
    statistic="median depth",
    value=math.nan,
    ci=(math.nan, 0.9),
    rule="r",
    n=3,
    kind="depth",
    evidence=(Evidence("x", {"d": 0.5}, "starts y too"), Evidence(None, {"model": "a"})),
    confidence=0.99,
    primary=False,
    control=True,
    beside=(Beside("l", math.nan),),
    caveats=("k",),
    sensitivity=(Sensitivity("t", 1, Label.HOLDS, 0.2),),
    detectable=0.7,
    holm=Label.INCONCLUSIVE,
)


def through_json(data):
    return json.loads(json.dumps(data))


def test_a_verdict_comes_back_from_json_field_for_field_nan_included():
    back = Verdict.from_dict(through_json(FULL.to_dict()))
    assert math.isnan(back.value) and math.isnan(back.ci[0]) and math.isnan(back.beside[0].value)
    same = {"value": 0.0, "ci": (0.0, 0.9), "beside": (Beside("l", 0.0),)}
    assert replace(back, **same) == replace(FULL, **same)
    assert back.cell == FULL.cell and back.figure == FULL.figure
    assert type(back.verdict) is Label and type(back.sensitivity[0].verdict) is Label


def test_a_verdict_as_plain_values_holds_no_enum_since_xdist_sends_plain_types_only():
    def types(value):
        if isinstance(value, dict):
            return set().union(*map(types, value.values()), {dict})
        if isinstance(value, list):
            return set().union(*map(types, value), {list})
        return {type(value)}

    assert types(FULL.to_dict()) <= {dict, list, str, int, float, bool, type(None)}
    assert FULL.to_dict()["evidence"] == [{"fact": "x", "d": 0.5, "caveat": "starts y too"}, {"model": "a"}]


def test_a_recorded_expectation_and_an_outcome_come_back_typed():
    expected = Expected.of(replace(FULL, value=0.5, ci=(0.4, 0.6), beside=(Beside("l", 0.3, "kl"),)))
    assert Expected.from_dict(through_json(expected.to_dict())) == expected
    assert Expected.from_dict({"verdict": "holds", "figure": "share = 0.8"}).n is None  # recorded before figures
    found = Result(("a",), "s", "xpassed", None, recorded=expected)
    assert Result.from_dict(through_json(found.to_dict())) == found and found.outcome is Outcome.XPASSED
    assert not found.outcome.as_recorded and Outcome.XFAILED.as_recorded


def test_results_come_back_from_json_as_they_were():
    figure = DepthCurves(
        model="smollm2",
        name="answer-by-depth",
        depth=[0.5, 1.0],
        p={"c": [[0.1, 0.9]]},
        rank={"c": [[3, 1]]},
        band=(0.8, 0.85),
    )
    written = results(
        "mon",
        {"a": [result(), result(["smollm2", "gemma3"], label=None)]},
        figures=(ClaimFigure("a", figure),),
        absent={"llama3": "./run lens download llama3"},
        changes={"smollm2": ["a: x → y"]},
        versions=({"libraries": {"torch": "2"}},),
    )
    written = replace(
        written,
        runs={**written.runs, "gemma3": replace(written.runs["smollm2"], partial=(4, 52))},
        warnings=(
            DataWarning("smollm2", "capitals", "why", EDGE, "qa", ("a (0.1)",), 65),
            DataWarning("smollm2", "capitals", "no token", LEFT_OUT, facts=("b",)),
        ),
    )
    written = replace(
        written,
        claims={
            "a": replace(
                written.claims["a"],
                results=(replace(written.claims["a"].results[0], run=run("sun")), *written.claims["a"].results[1:]),
            )
        },
    )
    back = Results.from_dict(through_json(written.to_dict()))
    assert back.figures[0].figure.band == [0.8, 0.85]  # JSON has no tuples: the figure draws from a list
    assert replace(back, figures=written.figures) == written
    older = through_json(written.to_dict())  # a file from before runs could be partial: none is
    del older["runs"]["gemma3"]["partial"]
    assert Results.from_dict(older).runs["gemma3"].partial is None


def test_a_warning_written_as_one_sentence_reads_back_with_the_fields_it_names():
    """findings.json from before warnings had fields: the edge and left-out sentences give their form and facts
    (how many replies were read is not in them: None); any other sentence stays a plain note."""
    edge = (
        "qa: 3 replies at an edge, won by less than 0.115 of probability over the runner-up (the largest margin a "
        "bfloat16 run overturned), so what they count may move in another dtype: a (0.052), b_c (0.080), d (0.1)"
    )
    back = [
        DataWarning.from_dict({"model": "m", "prompt_set": "s", "text": text})
        for text in (edge, "germany left out (no single-token answer)", "something else: 2 things")
    ]
    assert back[0] == DataWarning(
        "m",
        "s",
        "replies won by less than 0.115 of probability over the runner-up (the "
        "largest margin a bfloat16 run overturned), so what they count may move in another "
        "dtype",
        EDGE,
        "qa",
        ("a (0.052)", "b_c (0.080)", "d (0.1)"),
        None,
    )
    assert back[1] == DataWarning("m", "s", "no single-token answer", LEFT_OUT, facts=("germany",))
    assert back[2] == DataWarning("m", "s", "something else: 2 things")
    miscounted = edge.replace("qa: 3", "qa: 4")  # a sentence whose count is not its list's: kept as it was
    assert DataWarning.from_dict({"model": "m", "prompt_set": "s", "text": miscounted}).kind == ""


def test_each_result_carries_the_run_that_made_it():
    ran = {"smollm2": ModelRecord("smollm2", "s", "w", "cpu", "float32", 30)}
    done = assemble([_record("a", ["smollm2"])], ran, ["smollm2"], "pytest findings/ -k a", run("tue"))
    assert done.claims["a"].results[0].run == run("tue") == done.runs["smollm2"]


def test_a_run_stamp_keeps_its_libraries_and_commit_and_one_from_before_schema_4_reads_with_its_commit_unknown():
    stamp = Run(
        "mon",
        "pytest",
        "Linux x86_64",
        "3.11",
        {"torch": "2.13.0", "nnsight": "0.8.1"},
        Commit("a" * 40, True),
        partial=(1, 2),
    )
    assert Run.from_dict(through_json(stamp.to_dict())) == stamp
    flat = {"date": "mon", "command": "pytest", "machine": "Linux x86_64", "python": "3.11", "torch": "2.13.0"}
    assert Run.from_dict(flat) == Run("mon", "pytest", "Linux x86_64", "3.11", {"torch": "2.13.0"})


def _record(claim, models, prompt_set="capitals", outcome="passed", label="holds", test="test_x"):
    identity = Identity(
        claim=claim,
        number=1 if claim else None,
        title="T",
        doc="",
        module="m.py",
        test=test,
        models=tuple(models),
        prompt_set=prompt_set,
    )
    return TestRecord(
        identity=identity,
        outcome=outcome,
        message=None,
        verdict=verdict(models, prompt_set, label, claim or "c") if label else None,
    )


def test_assemble_groups_by_claim_and_counts_checks_per_model():
    ran = {"smollm2": ModelRecord("smollm2", "s", "w", "cpu", "float32", 30)}
    done = assemble(
        [
            _record("a", ["smollm2"]),
            _record("a", ["smollm2", "gemma3"], outcome="skipped", label=None),  # across models, gemma3 not here
            _record(None, ["smollm2"], label=None, test="test_layer_snapshot"),
            _record(None, ["smollm2"], outcome="failed", label=None, test="test_layer_snapshot"),
        ],
        ran,
        ["smollm2", "gemma3"],
        "pytest findings/",
    )
    assert [r.models for r in done.claims["a"].results] == [("smollm2",), ("smollm2",)]
    assert done.checks == {"smollm2": {"test_layer_snapshot": {"passed": 1, "failed": 1, "skipped": 0}}}
    assert list(done.runs) == ["smollm2"] and done.model_order == ("smollm2", "gemma3")
    assert done.runs["smollm2"].command == "pytest findings/" and "torch" in done.runs["smollm2"].libraries
