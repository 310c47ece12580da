"""The pre-load estimate (lens.estimate): work figures from the plan, time from an earlier measured run."""

import json
import sys

import pytest

import lens.loader
from lens.estimate import TIMINGS, estimate, record_timing
from lens.trace import TIMED_PROMPTS, collect


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_the_plan_counts_the_parameters_the_loaded_model_has(real_model):
    plan = lens.loader.plan(real_model.name, device="cpu")
    assert plan.parameters == sum(p.numel() for p in real_model.hf_model.parameters())  # tied embeddings once
    assert plan.weight_bytes == real_model.weight_bytes()


def test_without_an_earlier_run_the_estimate_gives_work_not_time(own_cache):
    line = estimate("llama3", 8_030_261_248, "float32", "mps", prompts=633).line()
    assert line == ("llama3: 8,030M parameters in float32 on mps (32.1 GB); the lens over 633 prompts in "
                    "40 forward passes; time unknown: first run of this model on this device")


def test_a_collect_records_the_time_the_next_estimate_uses(tiny_tokenizer, own_cache, monkeypatch):
    from types import SimpleNamespace

    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    clock = iter([100.0, 106.4])  # the collect's start and end: 6.4 s for 64 prompts
    monkeypatch.setattr(sys.modules["lens.trace"], "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    prompts = [f"The number {i} is" for i in range(TIMED_PROMPTS)]
    assert TIMED_PROMPTS == 64
    collect(model, prompts)
    assert json.loads((own_cache / TIMINGS).read_text()) == {"tiny-llama cpu float32": pytest.approx(0.1)}
    later = estimate("tiny-llama", 1_000, "float32", "cpu", prompts=200)
    assert later.seconds == pytest.approx(20.0) and "as measured here before" in later.line()
    assert estimate("tiny-llama", 1_000, "bfloat16", "cpu", prompts=200).seconds is None  # another dtype
    clock = iter([0.0, 1000.0])
    collect(model, prompts[:10])  # a test's handful is not timed: it would misstate a prompt set's pace
    assert json.loads((own_cache / TIMINGS).read_text()) == {"tiny-llama cpu float32": pytest.approx(0.1)}


def test_an_unwritable_cache_loses_the_timing_and_nothing_else(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("LENS_CACHE_DIR", str(blocked))  # a file where the folder should be
    record_timing("smollm2", "cpu", "float32", 20, 1.0)
    assert estimate("smollm2", 1, "float32", "cpu", 20).seconds is None
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
