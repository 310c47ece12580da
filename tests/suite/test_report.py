"""suite.report: an unreadable results file is set aside before a run, never lost with the run."""

import json

import pytest

from lens.errors import LensError
from suite.report import load_results, set_aside_if_unreadable


def test_a_truncated_results_file_is_set_aside_under_a_dated_name(tmp_path):
    whole = json.dumps({"schema": 3, "claims": {}})
    (tmp_path / "findings.json").write_text(whole[: len(whole) // 2])
    with pytest.raises(LensError, match="not valid JSON"):
        load_results(tmp_path)
    kept = set_aside_if_unreadable(tmp_path)
    assert kept is not None and kept.name.startswith("findings.unreadable-")
    assert kept.read_text() == whole[: len(whole) // 2]
    assert load_results(tmp_path) is None  # the run writes a new one


def test_a_readable_results_file_stays(tmp_path):
    (tmp_path / "findings.json").write_text(json.dumps({"schema": 3}))
    assert set_aside_if_unreadable(tmp_path) is None and load_results(tmp_path) == {"schema": 3}
    assert set_aside_if_unreadable(tmp_path / "absent") is None
