"""suite.document: findings.json read back as the typed results it was written from, with its schema; an unreadable
one is set aside before a run, never lost with the run; one in a layout this code does not read is neither merged
nor compared; one from schema 3 reads, its run stamps with their commit unknown."""

import json

import pytest

from lens.errors import LensError
from suite.document import READS, RESULTS, SCHEMA, dumps, load_results, loads, set_aside_if_unreadable
from suite.provenance import UNKNOWN
from tests.suite.built import result, results


def test_the_document_carries_its_schema_and_reads_back_as_it_was_written():
    written = results("2026-11-30 10:00 UTC", {"a": [result(["llama3"]), result(["mistral"], label="refuted")]})
    assert json.loads(dumps(written))["schema"] == SCHEMA
    assert loads(dumps(written)) == written


def test_a_truncated_results_file_is_set_aside_under_a_dated_name(tmp_path):
    whole = dumps(results("mon", {"a": [result()]}))
    (tmp_path / RESULTS).write_text(whole[: len(whole) // 2])
    with pytest.raises(LensError, match="not a findings results file: rerun the findings"):
        load_results(tmp_path)
    kept = set_aside_if_unreadable(tmp_path)
    assert kept is not None and kept.name.startswith("findings.unreadable-")
    assert kept.read_text() == whole[: len(whole) // 2]
    assert load_results(tmp_path) is None  # the run writes a new one


def test_valid_json_that_is_no_results_document_is_set_aside_too(tmp_path):
    (tmp_path / RESULTS).write_text(json.dumps({"schema": SCHEMA, "claims": {"a": {"results": "?"}}}))
    assert set_aside_if_unreadable(tmp_path) is not None and not (tmp_path / RESULTS).exists()


def test_results_in_a_layout_not_read_here_are_not_read_and_stay_where_they_are(tmp_path):
    (tmp_path / RESULTS).write_text(json.dumps({"schema": 2, "claims": {}}))
    assert 2 not in READS
    assert load_results(tmp_path) is None and set_aside_if_unreadable(tmp_path) is None
    assert (tmp_path / RESULTS).exists() and set_aside_if_unreadable(tmp_path / "absent") is None


def test_a_schema_3_document_reads_with_its_libraries_and_its_commit_unknown():
    data = json.loads(dumps(results("mon", {"a": [result()]})))
    data["schema"] = 3
    for run in data["runs"].values():  # schema 3 kept the libraries beside the other keys, and no commit
        run.update(run.pop("libraries"))
        del run["commit"], run["dirty"]
    run = loads(json.dumps(data)).runs["smollm2"]
    assert run.libraries == {"torch": "2.13.0"} and run.code.sha == UNKNOWN and run.code.dirty is None
