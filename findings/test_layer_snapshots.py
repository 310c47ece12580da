"""Per-layer snapshots: every prompt of every set, on each model, at every block: the followed token's
log-probability and rank and the top-5 lens tokens.

Not a claim but the regression record under all of them: after a library upgrade, a changed snapshot says
which prompts and layers moved, and its `meta` says which versions, device and dtype made the old one.
Recorded on the CPU in float32; a run on another device or in another dtype is compared with that dtype's
measured tolerance (claims.toml [snapshot]), so a Mac run has its per-layer regression check too.
Accept new behaviour with `--snapshot-update` (from a CPU float32 run only).
"""

import pytest

from findings.data import SETS, THRESHOLDS, forms_of
from suite.snapshots import SnapshotTolerance, layer_snapshot_extension, snapshot_data

RECORDED_ON = ("cpu", "float32")


@pytest.mark.parametrize("prompt_set", list(SETS))
def test_layer_snapshot(findings, prompt_set, snapshot, request):
    record = findings.record
    if request.config.option.update_snapshots and (record.device, record.dtype) != RECORDED_ON:
        pytest.fail(
            f"snapshots are recorded on the CPU in float32; this run is {record.dtype} on {record.device}: "
            "rerun with --device cpu --dtype float32 to update them"
        )
    tolerance = SnapshotTolerance.from_table(THRESHOLDS["snapshot"], record.dtype)
    forms = findings.lens(prompt_set)
    traces = [trace for form in forms_of(prompt_set) for trace in forms[form]]
    meta = {"model": findings.name, "weights": record.weights, "device": record.device, "dtype": record.dtype}
    assert snapshot_data(traces, meta) == snapshot.use_extension(layer_snapshot_extension(tolerance))
