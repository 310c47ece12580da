"""suite.versions: each library set, device and dtype keeps which models ran and whether all held."""

import json

from suite.versions import held_by_model, update_versions
from tests.suite import built

LIBS = {"torch": "2.13.0", "transformers": "5.23.0"}


def results(outcome="passed", snapshot_failed=0, model="smollm2", dtype="float32"):
    return built.results(
        "2026-11-30 10:00 UTC",
        {"c": [built.result([model], outcome=outcome)]},
        dtype=dtype,
        checks={model: {"test_layer_snapshot": {"passed": 3, "failed": snapshot_failed, "skipped": 0}}},
    )


def test_held_means_no_claim_failed_no_recorded_verdict_flipped_and_no_snapshot_failed():
    assert held_by_model(results()) == {"smollm2": True}
    assert held_by_model(results("xfailed")) == {"smollm2": True}  # a recorded non-hold, as recorded
    assert held_by_model(results("xpassed")) == {"smollm2": False}
    assert held_by_model(results("failed")) == {"smollm2": False}
    assert held_by_model(results(snapshot_failed=1)) == {"smollm2": False}


def test_runs_accumulate_per_library_set_device_and_dtype(tmp_path):
    update_versions(results(), tmp_path, LIBS)
    update_versions(results(model="gemma3"), tmp_path, LIBS)
    update_versions(results(dtype="bfloat16", outcome="failed"), tmp_path, LIBS)
    entries = update_versions(results(), tmp_path, {**LIBS, "torch": "2.14.1"})
    assert json.loads((tmp_path / "versions.json").read_text()) == entries
    assert [(e["libraries"]["torch"], e["dtype"], sorted(e["models"])) for e in entries] == [
        ("2.13.0", "float32", ["gemma3", "smollm2"]),
        ("2.13.0", "bfloat16", ["smollm2"]),
        ("2.14.1", "float32", ["smollm2"]),
    ]
    assert entries[1]["models"]["smollm2"]["held"] is False
