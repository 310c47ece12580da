"""suite.recorded: a figure that drifts beyond its kind's tolerance fails, a near-tie within it passes;
every branch of the comparison, and the recorded file's round trip (nan included)."""

import math
import tomllib
from dataclasses import replace

import pytest

from suite.recorded import figure_drift, render_recorded
from suite.results import Expected, Result
from suite.statistics import Beside, Label, Verdict
from tests.suite.built import results

TOLERANCE = {"share": 0.05, "log_ratio": 0.3, "n": 2}
BASE = Verdict(
    claim="c",
    models=("m",),
    prompt_set="s",
    verdict=Label.HOLDS,
    statistic="share",
    value=0.8,
    ci=(0.7, 0.9),
    rule="r",
    n=60,
    kind="share",
    beside=(Beside("answered in Q&A", 0.4),),
)


def _recorded(verdict: Verdict) -> Expected:
    return Expected.of(verdict)


@pytest.mark.parametrize(
    "change, drift",
    [
        ({}, None),
        ({"value": 0.84}, None),  # a near-tie: within 0.05
        ({"value": 0.85}, None),  # at the tolerance itself
        ({"value": 0.75}, None),  # 0.8 - 0.75 is 0.05000000000000004 in floats: float error allowed
        ({"value": 0.851}, "the figure moved from 0.8 to 0.851 (tolerance 0.05)"),
        ({"value": 0.749}, "the figure moved from 0.8 to 0.749 (tolerance 0.05)"),
        ({"value": 0.86}, "the figure moved from 0.8 to 0.86 (tolerance 0.05)"),  # though inside the old interval
        ({"n": 62}, None),  # two facts at a reply's near-tie
        ({"n": 58}, None),
        ({"n": 63}, "n changed from 60 to 63 (tolerance 2)"),
        ({"n": 57}, "n changed from 60 to 57 (tolerance 2)"),
        ({"n": 63, "value": 0.9}, "n changed from 60 to 63 (tolerance 2)"),  # n is said first
        ({"value": math.nan}, "the figure moved from 0.8 to nan (tolerance 0.05)"),  # the figure vanished
        ({"verdict": "no data", "n": 0, "value": math.nan}, "the data changed (no data on one side only)"),
    ],
)
def test_figure_drift(change, drift):
    assert figure_drift(replace(BASE, **change), _recorded(BASE), TOLERANCE) == drift


def test_nan_on_either_side_alone_is_drift_and_on_both_is_not():
    undecided = replace(BASE, verdict="inconclusive", value=math.nan, beside=())  # e.g. a median of nothing
    decided = replace(undecided, value=0.8)
    assert figure_drift(decided, _recorded(undecided), TOLERANCE) == "the figure moved from nan to 0.8 (tolerance 0.05)"
    assert figure_drift(undecided, _recorded(decided), TOLERANCE) == "the figure moved from 0.8 to nan (tolerance 0.05)"
    assert figure_drift(undecided, _recorded(undecided), TOLERANCE) is None
    # The same for a figure beside the verdict.
    gone = replace(BASE, beside=(Beside("answered in Q&A", math.nan),))
    assert figure_drift(gone, _recorded(BASE), TOLERANCE) == "'answered in Q&A' moved from 0.4 to nan (tolerance 0.05)"
    assert figure_drift(BASE, _recorded(gone), TOLERANCE) == "'answered in Q&A' moved from nan to 0.4 (tolerance 0.05)"
    assert figure_drift(gone, _recorded(gone), TOLERANCE) is None


def test_a_record_from_before_figures_compares_the_label_only():
    old_style = Expected.from_dict({"verdict": "holds", "figure": "share = 0.8"})  # no n, value or kind recorded
    assert figure_drift(replace(BASE, value=0.1, n=3), old_style, TOLERANCE) is None
    assert figure_drift(replace(BASE, verdict="no data", n=0), old_style, TOLERANCE) is not None


def test_a_figure_beside_the_verdict_is_guarded_too():
    moved = replace(BASE, beside=(Beside("answered in Q&A", 0.5),))
    assert "answered in Q&A" in figure_drift(moved, _recorded(BASE), TOLERANCE)
    steady = replace(BASE, beside=(Beside("answered in Q&A", 0.42),))
    assert figure_drift(steady, _recorded(BASE), TOLERANCE) is None


def test_each_kind_has_its_own_tolerance():
    ratio = replace(BASE, kind="log_ratio", value=1.0, beside=())
    assert figure_drift(replace(ratio, value=1.25), _recorded(ratio), TOLERANCE) is None
    assert figure_drift(replace(ratio, value=1.35), _recorded(ratio), TOLERANCE) is not None


def test_a_verdict_whose_figure_is_nan_is_written_and_loaded_back_as_nan(tmp_path):
    from suite.recorded import Recorded, write_recorded

    undecided = replace(
        BASE, verdict="inconclusive", value=math.nan, ci=(math.nan, 0.4), beside=(Beside("answered in Q&A", math.nan),)
    )
    path = tmp_path / "expected.toml"
    write_recorded(results("mon", {"c": [Result(("m",), "s", "passed", None, verdict=undecided)]}), path)
    assert "value = nan, ci = [nan, 0.4]" in path.read_text()  # TOML's own nan, not a string
    loaded = Recorded.load(path, TOLERANCE).get(undecided)
    assert loaded.verdict == Label.INCONCLUSIVE and loaded.n == 60 and loaded.ci[1] == 0.4
    assert math.isnan(loaded.value) and math.isnan(loaded.ci[0]) and math.isnan(loaded.beside[0].value)
    assert figure_drift(undecided, loaded, TOLERANCE) is None  # nan recorded, nan now: no drift
    assert figure_drift(replace(undecided, value=0.5), loaded, TOLERANCE) is not None


def test_the_recorded_file_round_trips_with_nan():
    empty = replace(BASE, verdict="no data", value=math.nan, ci=(math.nan, math.nan), n=0)
    rows = [
        Result(("m",), "s", "passed", None, verdict=BASE),
        Result(("m",), "t", "skipped", None, verdict=replace(empty, prompt_set="t")),
    ]
    data = tomllib.loads(render_recorded(results("mon", {"c": rows})))["c"]["m"]
    assert data["s"]["value"] == 0.8 and data["s"]["beside"][0]["value"] == 0.4 and data["s"]["kind"] == "share"
    assert math.isnan(data["t"]["value"]) and data["t"]["n"] == 0
    assert figure_drift(empty, Expected.from_dict(data["t"]), TOLERANCE) is None
    assert figure_drift(BASE, Expected.from_dict(data["s"]), TOLERANCE) is None


def test_a_run_in_another_dtype_is_held_to_that_dtypes_tolerances():
    from suite.recorded import Recorded

    recorded = Recorded({}, {"share": 0.03, "n": 1, "bfloat16": {"share": 0.12}})
    assert recorded.tolerance_for("float32") == {"share": 0.03, "n": 1}
    assert recorded.tolerance_for("bfloat16") == {"share": 0.12, "n": 1}
    moved = replace(BASE, value=0.9)  # 0.1 from the record: drift in float32, bfloat16 noise
    assert figure_drift(moved, _recorded(BASE), recorded.tolerance_for("float32"))
    assert figure_drift(moved, _recorded(BASE), recorded.tolerance_for("bfloat16")) is None


def test_a_flip_is_a_near_tie_only_where_the_interval_moved_within_tolerance():
    from suite.recorded import near_tie

    refuted = replace(BASE, verdict="refuted", value=0.09, ci=(0.0, 0.48), n=11)
    edge = replace(refuted, verdict="inconclusive", value=0.12, ci=(0.0, 0.52), n=10)  # the upper end crossed .5
    assert near_tie(edge, _recorded(refuted), {"share": 0.05})
    assert not near_tie(edge, _recorded(refuted), {"share": 0.03})
    real = replace(refuted, verdict="inconclusive", value=0.3, ci=(0.1, 0.6))
    assert not near_tie(real, _recorded(refuted), {"share": 0.05})


def test_a_verdict_through_another_lens_is_recorded_and_found_under_its_own_key(tmp_path):
    from suite.recorded import Recorded, write_recorded

    tuned = replace(BASE, lens="tuned", verdict="refuted", value=0.3, ci=(0.2, 0.4))
    path = tmp_path / "expected.toml"
    write_recorded(
        results(
            "mon",
            {
                "c": [
                    Result(("m",), "s", "passed", None, verdict=BASE),
                    Result(("m",), "s", "passed", None, verdict=tuned, lens="tuned"),
                ]
            },
        ),
        path,
    )
    recorded = Recorded.load(path, TOLERANCE)
    assert recorded.get(BASE).verdict == Label.HOLDS and recorded.get(tuned).verdict == Label.REFUTED
    assert '[c."m@tuned"]' in path.read_text()
