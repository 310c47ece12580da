"""A model larger than memory still runs, through accelerate's CPU/disk offload, with the same lens; it is offloaded
when its weights exceed 80% of the memory free, and only then."""

from collections import Counter
from dataclasses import replace

import psutil
import pytest

from lens.models.loader import load, needs_offload, plan
from lens.reads.trace import trace

PROMPTS = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]
GB = 10**9


@pytest.mark.parametrize(
    ("weight_bytes", "free_bytes", "offloads"),
    [
        pytest.param(540 * 10**6, 16 * GB, False, id="smollm2 in float32, 16 GB free"),
        pytest.param(32 * GB, 60 * GB, False, id="Llama 3 8B in float32, 60 GB free"),
        pytest.param(141 * GB, 60 * GB, True, id="Llama 3 70B in bfloat16, 60 GB free"),
        pytest.param(2**32, 5 * 2**30, False, id="exactly 80% of what is free"),
        pytest.param(2**32 + 1, 5 * 2**30, True, id="one byte more"),
        pytest.param(1, 0, True, id="nothing free"),
    ],
)
def test_weights_are_offloaded_when_they_exceed_80_percent_of_the_free_memory(weight_bytes, free_bytes, offloads):
    assert needs_offload(weight_bytes, free_bytes) is offloads


def test_load_offloads_by_the_planned_size_against_the_memory_free_now(tiny_folder, tmp_path):
    """The decision is taken on the plan's weight bytes: a random tiny model planned with half as many float32
    parameters as bytes are free (twice the free memory in bytes) is offloaded, as planned it is not."""
    planned = plan(str(tiny_folder), device="cpu")
    huge = replace(planned, parameters=psutil.virtual_memory().available // 2)
    assert load(str(tiny_folder), planned=huge, offload_folder=tmp_path).offloaded
    assert not load(str(tiny_folder), planned=planned, offload_folder=tmp_path).offloaded


@pytest.mark.slow
def test_smollm2_offloaded_mostly_to_disk_gives_the_in_memory_lens(smollm2, tmp_path):
    offloaded = load("smollm2", device="cpu", offload=True, max_memory={"cpu": "250MB"}, offload_folder=tmp_path)
    placement = Counter(offloaded.hf_model.hf_device_map.values())
    assert offloaded.offloaded and placement["disk"] > placement["cpu"] > 0
    # Disk-offloaded weights are not in memory: accelerate reads them from the checkpoint per call.
    on_meta = sum(p.numel() for p in offloaded.hf_model.parameters() if p.device.type == "meta")
    assert on_meta > 0.5 * sum(p.numel() for p in smollm2.hf_model.parameters())
    far, near = trace(offloaded, PROMPTS, [" Berlin", " Paris"]), trace(smollm2, PROMPTS, [" Berlin", " Paris"])
    for a, b in zip(far, near):
        for x, y in zip(a.layers, b.layers):
            assert abs(x.p_answer - y.p_answer) <= 1e-5 and x.rank_answer == y.rank_answer
            assert [t for t, _ in x.top] == [t for t, _ in y.top]
        assert a.final_max_abs_diff <= 1e-4
