"""suite.provenance: the library list read from its one declaration, and the commit of the code that ran: clean,
changed, its reports aside, and unknown where there is no git checkout."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from suite.provenance import LIBRARIES, UNKNOWN, UPGRADED, Commit, code_commit, library_versions

SUITE = Path(__file__).parents[2] / "suite"


def test_the_libraries_are_declared_once_and_read_from_there():
    declared = tomllib.loads((SUITE / "libraries.toml").read_text())
    assert LIBRARIES == tuple(declared) and {"torch", "transformer-lens", "nnsight"} <= set(LIBRARIES)
    assert set(UPGRADED) < set(LIBRARIES)
    spelled = [path.name for path in SUITE.glob("*.py") if re.search(r"transformer[-_]lens[\"']", path.read_text())]
    assert spelled == []  # no module of the suite names a library of the list again
    assert set(library_versions()) == set(LIBRARIES)  # every one is installed here
    assert library_versions(("torch", "no-such-library")).keys() == {"torch"}


@pytest.fixture
def checkout(tmp_path):
    """A git checkout of one committed file, and a reports folder inside it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed here")

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "findings.md").write_text("old\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return tmp_path, git("rev-parse", "HEAD").stdout.strip()


def test_a_clean_checkout_gives_its_commit(checkout):
    root, sha = checkout
    assert code_commit(root) == Commit(sha, False)
    assert code_commit(root).text == sha[:12]


def test_a_changed_or_new_file_makes_it_dirty_but_a_rewritten_report_does_not(checkout):
    root, sha = checkout
    (root / "reports" / "findings.md").write_text("new\n")
    (root / "reports" / "findings.json").write_text("{}\n")
    assert code_commit(root, outputs=(root / "reports",)) == Commit(sha, False)
    assert code_commit(root).dirty  # the reports count where they are not named as the run's outputs
    (root / "claim.py").write_text("y = 2\n")  # a new claim module, not yet committed
    assert code_commit(root, outputs=(root / "reports",)) == Commit(sha, True)
    assert code_commit(root, outputs=(root / "reports",)).text == f"{sha[:12]} + uncommitted changes"


def test_no_checkout_or_no_git_gives_unknown_not_a_crash(tmp_path, monkeypatch):
    assert code_commit(tmp_path) == Commit(UNKNOWN, None)
    assert code_commit(tmp_path).text == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run at all
    assert code_commit(Path(__file__).parent) == Commit()
