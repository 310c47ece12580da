"""suite.upgrade: the candidate lock, the report of what moved (verdicts, figures, per-layer snapshots), and
taking the candidate; building the environment and running the findings are `./run upgrade-check` itself."""

import json
from dataclasses import replace

import pytest

from lens.errors import LensError
from suite.document import RESULTS, dumps
from suite.upgrade import HOME, candidate_lock, parse_wanted, report, take
from tests.suite import built

LOCK = 'numpy==2.4.6\ntorch==2.13.0; sys_platform != "darwin"\ntorch==2.14.1; sys_platform == "darwin"\n'


def test_the_candidate_lock_changes_this_platforms_line_only():
    text, changed = candidate_lock(LOCK, {"torch": "2.15.0", "numpy": "2.4.6"}, platform="linux")
    assert 'torch==2.15.0; sys_platform != "darwin"' in text and 'torch==2.14.1; sys_platform == "darwin"' in text
    assert changed == {"torch": "2.13.0 -> 2.15.0"}  # numpy is already there
    mac, changed = candidate_lock(LOCK, {"torch": "2.15.0"}, platform="darwin")
    assert 'torch==2.13.0; sys_platform != "darwin"' in mac and changed == {"torch": "2.14.1 -> 2.15.0"}


def test_candidates_are_package_equals_version_of_a_locked_package():
    wanted = parse_wanted(["transformer_lens==4.4.0", "Torch==2.14.1"])
    assert wanted == {"transformer-lens": "4.4.0", "torch": "2.14.1"}
    with pytest.raises(LensError, match="is not package==version"):
        parse_wanted(["torch>=2"])
    with pytest.raises(LensError, match="not in requirements.lock"):
        candidate_lock(LOCK, {"jax": "0.1"})


TOLERANCE = """[snapshot]
logp = 0.05
deep = -30.0
rank = 0.25
near_rank = 0
unmoved = 0.0002
tie = 0.002
top = 0.05
replies = 0
"""


def rows(logp, followed=" B"):
    return [
        {"prompt": "p", "layer": layer, "followed": followed, "logp": value, "rank": 3, "top": [["a", 0.5]]}
        for layer, value in enumerate(logp)
    ]


def lay_out(root, old_logp, new_logp, outcome="passed", message=None, followed=" B"):
    name = "findings/__snapshots__/test_layer_snapshots/test_layer_snapshot[m-capitals].json"
    for base, logp, token in ((root, old_logp, " B"), (root / HOME / "src", new_logp, followed)):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(json.dumps({"meta": {}, "rows": rows(logp, token)}))
    (root / "findings" / "claims.toml").write_text(TOLERANCE)
    (root / "pytest.ini").write_text("[pytest]\nlens_findings = findings\nlens_settings = findings/claims.toml\n")
    (root / HOME / "reports").mkdir(parents=True)
    done = built.results("mon", {"c": [replace(built.result(["m"], outcome=outcome), message=message)]})
    (root / HOME / "reports" / RESULTS).write_text(dumps(done))


def test_nothing_moved_is_safe_to_take(tmp_path):
    lay_out(tmp_path, [-1.0, -0.5], [-1.01, -0.5])  # within the snapshot's 0.05 nats
    text, quiet = report(tmp_path, tmp_path / HOME, {"torch": "2.13.0 -> 2.14.1"}, 0)
    assert quiet and "safe to take" in text and "torch 2.13.0 -> 2.14.1" in text


def test_drift_is_named_by_model_set_and_layer_and_a_moved_figure_by_claim(tmp_path):
    lay_out(
        tmp_path,
        [-1.0, -0.5, -0.2],
        [-1.0, -0.9, -0.2],
        outcome="failed",
        message="c on m (capitals): the figure moved from 0.8 to 0.9 (tolerance 0.03)",
    )
    text, quiet = report(tmp_path, tmp_path / HOME, {}, 1)
    assert not quiet and "Review these" in text
    assert "m-capitals: layers 1 (1)" in text and "the figure moved from 0.8 to 0.9" in text


def test_a_changed_reply_is_named(tmp_path):
    lay_out(tmp_path, [-1.0, -0.5], [-1.0, -0.5], followed=" C")  # the layers' top-k still agree
    text, quiet = report(tmp_path, tmp_path / HOME, {}, 0)
    assert not quiet and "m-capitals: the model's reply changed on 1 prompts: p" in text


def test_a_candidate_run_that_wrote_no_results_is_not_safe_to_take(tmp_path):
    lay_out(tmp_path, [-1.0, -0.5], [-1.0, -0.5])
    (tmp_path / HOME / "reports" / RESULTS).unlink()
    text, quiet = report(tmp_path, tmp_path / HOME, {}, 0)
    assert not quiet and "the findings wrote no results there" in text


def test_take_moves_the_lock_to_the_candidate(tmp_path):
    with pytest.raises(LensError, match="no candidate checked yet"):
        take(tmp_path)
    (tmp_path / HOME).mkdir()
    (tmp_path / HOME / "requirements.lock").write_text("torch==2.14.1\n")
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    take(tmp_path)
    assert (tmp_path / "requirements.lock").read_text() == "torch==2.14.1\n"
