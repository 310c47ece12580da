"""A model larger than memory still runs, through accelerate's CPU/disk offload, with the same lens."""

from collections import Counter

from lens.models.loader import load
from lens.reads.trace import trace

PROMPTS = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]


def test_smollm2_offloaded_mostly_to_disk_gives_the_in_memory_lens(smollm2, tmp_path):
    offloaded = load("smollm2", device="cpu", offload=True, max_memory={"cpu": "250MB"},
                     offload_folder=tmp_path)
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
