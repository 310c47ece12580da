"""suite.estimate: the times kept per artefact and per test, and the line said before a model loads."""

import json

import pytest

from suite.estimate import LOAD, TIMINGS, Timings, artefact_name, estimate, run_key

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


@pytest.mark.parametrize("seconds, unmeasured, said", [
    (None, 3, "3 tests; time unknown: first run of these tests with this model on this device"),
    (200.0, 0, "3 tests; about 3 min (as measured here before)"),
    (40.0, 1, "3 tests; about 40 s (as measured here before), and 1 tests never measured here"),
])
def test_the_line_gives_the_work_and_the_time_measured_before(tmp_path, seconds, unmeasured, said):
    timings = Timings(path=tmp_path / TIMINGS)
    if seconds is not None:
        timings.seconds(run_key("llama3", "mps", "float32"), LOAD, seconds)
        for test in ("a", "b", "c")[: 3 - unmeasured]:
            timings.used(run_key("llama3", "mps", "float32"), test, LOAD)
    line = estimate(timings, "llama3", 8_030_261_248, "float32", "mps", ["a", "b", "c"]).line()
    assert line == f"llama3: 8,030M parameters in float32 on mps (32.1 GB); {said}"
