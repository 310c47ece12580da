"""Per-layer snapshots: every prompt of every set, on each model, at every block: the answer's
log-probability and rank and the top-5 lens tokens.

Not a claim but the regression record under all of them: after a library upgrade, a changed snapshot says
which prompts and layers moved, and its `meta` says which versions, device and dtype made the old one.
Compared with tolerances that let near-ties through (suite/snapshots.py); they were recorded on the CPU in
float32 and run only there (on MPS or in another dtype the lens check guards the numbers instead).
Accept new behaviour with `--snapshot-update`.
"""

import pytest

from findings.data import SETS, forms_of
from suite.snapshots import LayerSnapshotExtension, snapshot_data

RECORDED_ON = ("cpu", "float32")


@pytest.fixture
def lens_snapshot(snapshot):
    return snapshot.use_extension(LayerSnapshotExtension)


@pytest.mark.parametrize("prompt_set", list(SETS))
def test_layer_snapshot(findings, prompt_set, lens_snapshot):
    record = findings.record
    if (record.device, record.dtype) != RECORDED_ON:
        pytest.skip(f"snapshots were recorded on {' in '.join(RECORDED_ON)}; this run is {record.dtype} on {record.device}")
    forms = findings.lens(prompt_set)
    traces = [trace for form in forms_of(prompt_set) for trace in forms[form]]
    meta = {"model": findings.name, "weights": record.weights, "device": record.device, "dtype": record.dtype}
    assert snapshot_data(traces, meta) == lens_snapshot
