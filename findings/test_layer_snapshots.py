"""Per-layer snapshots: each (model, prompt)'s top-5 lens tokens and answer probability at every block.

Not a claim but the regression record under all of them: after a library upgrade, a changed snapshot
says which layers moved, and its `meta` says which versions made the old one. Probabilities match
within 0.01; tokens must match exactly. Accept new behaviour with `--snapshot-update`.
"""

import pytest

from findings.data import CAPITALS, FACTS, FORMS
from suite.snapshots import LayerSnapshotExtension, snapshot_data

CASES = [pytest.param(form, i, id=f"{fact.id}-{form}") for form in FORMS for i, fact in enumerate(FACTS)]


@pytest.fixture
def lens_snapshot(snapshot):
    return snapshot.use_extension(LayerSnapshotExtension)


@pytest.mark.parametrize("form, index", CASES)
def test_layer_snapshot(findings, form, index, lens_snapshot):
    assert snapshot_data(findings.lens(CAPITALS)[form][index], findings.record.weights) == lens_snapshot
