"""suite.estimate: the times kept per artefact and per test, and the line said before a model loads."""

import json

import pytest

from suite.estimate import (
    LOAD,
    TIMINGS,
    Shape,
    Throughput,
    Timings,
    Work,
    WorkPlan,
    artefact_name,
    estimate,
    run_key,
    throughput_for,
    throughputs,
)

RUN = run_key("smollm2", "cuda:1", "float32")


def test_a_run_is_one_model_on_a_kind_of_device_in_one_dtype():
    assert RUN == "smollm2 cuda float32" and artefact_name(("lens", "capitals", "qa")) == "lens capitals qa"


def test_the_tests_selected_cost_the_artefacts_they_read_each_once(tmp_path):
    timings = Timings(path=tmp_path / TIMINGS)
    timings.seconds(RUN, LOAD, 5.0)
    timings.seconds(RUN, ("lens", "capitals"), 30.0)
    timings.seconds(RUN, "patching", 100.0)
    timings.used(RUN, "t1", ("lens", "capitals"))
    timings.used(RUN, "t2", ("lens", "capitals"))
    timings.used(RUN, "t3", "patching")
    assert timings.expected(RUN, ["t1", "t2"]) == (35.0, 2, 0)  # the lens once, and the load
    assert timings.expected(RUN, ["t1", "t3", "t9"]) == (135.0, 2, 1)  # t9 never ran here
    assert timings.expected(RUN, ["t9"]) == (None, 0, 1)
    assert timings.expected(run_key("smollm2", "cpu", "bfloat16"), ["t1"]) == (None, 0, 1)  # another dtype
    timings.ran(RUN, "t9")  # it ran and read nothing (a base model's chat form skips at once)
    timings.ran(RUN, "t1")  # what a test read stays
    assert timings.expected(RUN, ["t1", "t3", "t9"]) == (135.0, 3, 0)


def test_saving_adds_to_what_earlier_runs_kept(tmp_path):
    path = tmp_path / TIMINGS
    path.write_text(json.dumps({RUN: {"seconds": {"grid": 2.0, "load": 9.0}, "tests": {"t0": ["grid"]}}}))
    timings = Timings.load(path)
    timings.seconds(RUN, LOAD, 4.0)
    timings.used(RUN, "t1", "grid")
    timings.save()
    kept = json.loads(path.read_text())[RUN]
    assert kept == {"seconds": {"grid": 2.0, "load": 4.0}, "tests": {"t0": ["grid"], "t1": ["grid"]}}
    assert Timings.load(path).expected(RUN, ["t0", "t1"]) == (6.0, 2, 0)


def test_an_unwritable_or_unreadable_cache_loses_the_timings_and_nothing_else(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    timings = Timings.load(blocked / TIMINGS)  # a file where the folder should be
    timings.seconds(RUN, LOAD, 1.0)
    timings.save()
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    (tmp_path / TIMINGS).write_text("{not json")
    assert Timings.load(tmp_path / TIMINGS).runs == {}


@pytest.mark.parametrize(
    "seconds, unmeasured, said",
    [
        (None, 3, "3 tests; time unknown: first run of these tests with this model on this device"),
        (200.0, 0, "3 tests; about 3 min (as measured here before)"),
        (40.0, 1, "3 tests; about 40 s (as measured here before), and 1 tests never measured here"),
    ],
)
def test_the_line_gives_the_work_and_the_time_measured_before(tmp_path, seconds, unmeasured, said):
    timings = Timings(path=tmp_path / TIMINGS)
    if seconds is not None:
        timings.seconds(run_key("llama3", "mps", "float32"), LOAD, seconds)
        for test in ("a", "b", "c")[: 3 - unmeasured]:
            timings.used(run_key("llama3", "mps", "float32"), test, LOAD)
    line = estimate(timings, "llama3", 8_030_261_248, "float32", "mps", ["a", "b", "c"]).line()
    assert line == f"llama3: 8,030M parameters in float32 on mps (32.1 GB); {said}"


SHAPE = Shape(n_layers=2, d_model=4, vocab=10, parameters=200, embedding=80, weight_bytes=800)
TABLES = {
    "cpu float32": Throughput(
        kind="cpu float32",
        per_pass=1.0,
        per_pass_byte=0.01,
        per_flop=0.001,
        per_logit=0.1,
        per_fit_flop=0.5,
        per_spot_byte=0.002,
        per_test=3.0,
        load_bytes_per_second=100.0,
        source="measured here: a test",
    )
}


def test_the_cost_model_prices_each_unit_of_work_as_its_table_says():
    tp = TABLES["cpu float32"]
    work = Work(passes=2, tokens=5, unembedded=3, reduced=4, moved=6, fitted=1, gram_rows=7, spots=1)
    by_hand = (
        2 * (1.0 + 800 * 0.01)  # a pass: its fixed cost and every weight read once
        + 2
        * 0.001
        * (
            5 * 120  # tokens through the 120 parameters that are not embeddings
            + 3 * 4 * 10  # rows unembedded: d_model x vocab each
            + 6 * 4 * 4  # rows moved through a d_model x d_model matrix
            + 2 * 7 * 25
        )  # Gram matrices: (d + 1)^2 for each row summed, twice
        + 0.1 * 4 * 10  # rows reduced over the vocabulary
        + 0.5 * 3 * 125  # a fit's solve: 3 (d + 1)^3
        + 0.002 * 800
    )  # a spot check: the weights once more
    assert tp.seconds(work, SHAPE) == pytest.approx(by_hand)
    assert tp.seconds(work + work, SHAPE) == pytest.approx(2 * by_hand)
    assert tp.load_seconds(SHAPE) == 8.0


def test_a_first_run_is_estimated_by_the_cost_model_not_left_unknown(tmp_path):
    timings = Timings(path=tmp_path / TIMINGS)
    plan = WorkPlan(SHAPE, {"readings capitals qa": Work(passes=2), "lens capitals qa exact": Work(reduced=4)})
    found = estimate(timings, "llama3", 8_030_261_248, "float32", "cpu", ["a", "b"], plan, TABLES)
    assert found.modelled == pytest.approx(2 * 9.0 + 4.0 + 8.0 + 2 * 3.0)  # passes, reads, the load, 2 tests
    line = found.line()
    assert "time unknown" not in line
    assert (
        "about 36 s on a first run (cost model: 2 forward passes over 0 tokens, the lens over 4 rows of 10 "
        "tokens, at cpu float32 throughput measured here)" in line
    )


def test_what_was_measured_before_counts_as_measured_and_the_rest_by_the_cost_model(tmp_path):
    timings = Timings(path=tmp_path / TIMINGS)
    run = run_key("llama3", "cpu", "float32")
    timings.seconds(run, LOAD, 10.0)
    timings.seconds(run, ("readings", "capitals", "qa"), 50.0)
    timings.used(run, "a", ("readings", "capitals", "qa"))
    plan = WorkPlan(SHAPE, {"readings capitals qa": Work(passes=2), "lens capitals qa exact": Work(reduced=4)})
    found = estimate(timings, "llama3", 8_030_261_248, "float32", "cpu", ["a", "b"], plan, TABLES)
    assert found.seconds == pytest.approx(10.0 + 50.0 + 2 * 3.0) and found.modelled == pytest.approx(4.0)
    assert found.unmeasured == 1
    assert "about 70 s (66 s as measured here before, 4 s by the cost model" in found.line()
    timings.seconds(run, ("lens", "capitals", "qa", "exact"), 5.0)
    assert (
        estimate(timings, "llama3", 1, "float32", "cpu", ["a"], plan, TABLES)
        .line()
        .endswith("about 68 s (as measured here before)")
    )


def test_a_device_without_a_table_is_priced_by_another_and_says_so():
    stand_in = throughput_for("mps", "float16", TABLES)
    assert stand_in.per_flop == TABLES["cpu float32"].per_flop
    assert stand_in.source.startswith("cpu float32's, standing in: none known for mps float16")
    assert throughput_for("cuda:1", "float32", TABLES).kind == "cuda float32"
    assert set(throughputs()) >= {"cpu float32", "cpu bfloat16", "mps float32"}
