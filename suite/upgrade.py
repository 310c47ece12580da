"""`./run upgrade-check [package==version ...]`: the findings under candidate library versions, in a second
environment beside `.venv` (never touched), against the recorded figures and the per-layer snapshots; a
report `reports/upgrade-<date>.md` that says what moved; `--take` moves the lock to the candidate.

The candidate environment, `.venv-upgrade/`, holds its own copy of the project (`src/`), so the candidate run
may write its snapshots there (`--snapshot-update`) and they are compared layer by layer with the committed
ones; the verdicts and figures are judged against the recorded verdicts as in any run. The package of claims, its
settings and its snapshots are where the pytest configuration names them (`suite.config`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

from lens.errors import LensError
from suite.config import FINDINGS, SETTINGS, path_option
from suite.document import load_results
from suite.provenance import UPGRADED
from suite.snapshots import SnapshotTolerance, changed_replies, drifted_layers

HOME = ".venv-upgrade"
LOCK = "requirements.lock"
SNAPSHOTS = "__snapshots__"
"""Where syrupy keeps a test folder's snapshots."""
IGNORED = (".git", ".venv", HOME, "__pycache__", ".pytest_cache", "reports", "*.egg-info", ".benchmarks")


def candidate_lock(lock: str, wanted: dict[str, str], platform: str = sys.platform) -> tuple[str, dict[str, str]]:
    """The lock with `wanted` versions, and what changed (package -> "old -> new"). A package pinned per
    platform (torch) changes on this platform's line only."""
    changed, lines, seen = {}, [], set()
    for line in lock.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^;\s]+)(\s*;\s*(.+))?$", line)
        if match:
            name, old, marker = _norm(match[1]), match[2], match[4]
            if name in wanted and (marker is None or _applies(marker, platform)):
                seen.add(name)
                if wanted[name] != old:
                    changed[name] = f"{old} -> {wanted[name]}"
                    line = f"{match[1]}=={wanted[name]}{match[3] or ''}"
        lines.append(line)
    missing = set(wanted) - seen
    if missing:
        raise LensError(f"{', '.join(sorted(missing))} is not in {LOCK}: name a package the project uses")
    return "\n".join(lines) + "\n", changed


def parse_wanted(args: list[str]) -> dict[str, str]:
    """`package==version` arguments; one-line refusal of anything else."""
    wanted = {}
    for arg in args:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", arg)
        if not match:
            raise LensError(f"{arg!r} is not package==version: name each candidate like torch==2.14.1")
        wanted[_norm(match[1])] = match[2]
    return wanted


def newest(python: str, package: str) -> str:
    """The newest version of `package` the package index offers (pip's own answer)."""
    done = subprocess.run(
        [python, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )
    match = re.search(r"\((\S+)\)", done.stdout)
    if done.returncode or not match:
        raise LensError(f"cannot ask the package index for {package}'s versions: {_last_line(done.stderr)}")
    return match[1]


def build(root: Path, lock_text: str, say) -> Path:
    """`.venv-upgrade` with the candidate lock installed and the project copied into it; its python."""
    home = root / HOME
    if home.exists():
        shutil.rmtree(home)
    say(f"building {HOME} (a copy of the project and a new environment; .venv stays as it is)")
    shutil.copytree(root, home / "src", ignore=shutil.ignore_patterns(*IGNORED))
    (home / LOCK).write_text(lock_text)
    subprocess.run([sys.executable, "-m", "venv", str(home / "env")], check=True)
    python = str(home / "env" / "bin" / "python")
    for what in (["torch"], ["-e", str(home / "src")]):
        done = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(home / LOCK), *what],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise LensError(f"the candidate versions do not install: {_last_line(done.stderr)}")
    return Path(python)


def run_findings(python: Path, home: Path, say, extra: list[str]) -> subprocess.CompletedProcess:
    """The findings in the candidate environment, against the record, snapshots written into its copy; `extra`:
    pytest arguments for that run (`-m smollm2`; a test's own plugin, `-p ...`)."""
    say("running the findings there against the recorded figures and snapshots (minutes; progress below)")
    src = home / "src"
    command = [
        str(python),
        "-m",
        "pytest",
        str(path_option(FINDINGS, src).relative_to(src.resolve())),
        "-p",
        "no:cacheprovider",
        "-q",
        "--tb=no",
        "--snapshot-update",
        "--reports",
        str(home / "reports"),
        *extra,
    ]
    return subprocess.run(command, cwd=src, env={**os.environ, "LENS_PROGRESS": "0"})


def report(root: Path, home: Path, changed: dict[str, str], returncode: int) -> tuple[str, bool]:
    """The upgrade report's Markdown, and whether nothing moved."""
    results = load_results(home / "reports")
    moved = (
        [
            f"- {claim}, {r.label}: {r.outcome}: {r.message or ''}"
            for claim, entry in results.claims.items()
            for r in entry.results
            if not r.outcome.as_recorded
        ]
        if results
        else ["- the findings wrote no results there"]
    )
    # The snapshots' tolerance in the recorded dtype, float32, the one the candidate runs in.
    tolerance = SnapshotTolerance.from_table(tomllib.loads(path_option(SETTINGS, root).read_text())["snapshot"])
    drift = []
    for old in sorted((path_option(FINDINGS, root) / SNAPSHOTS).rglob("*.json")):
        new_rows = json.loads((home / "src" / old.relative_to(root)).read_text())["rows"]
        old_rows = json.loads(old.read_text())["rows"]
        layers, replies = drifted_layers(new_rows, old_rows, tolerance), changed_replies(new_rows, old_rows)
        where = old.stem.split("[")[-1].rstrip("]")
        if layers:
            at = ", ".join(f"{layer} ({count})" for layer, count in sorted(layers.items()))
            drift.append(f"- {where}: layers {at} (layer (prompts that moved))")
        if len(replies) > tolerance.replies:
            drift.append(
                f"- {where}: the model's reply changed on {len(replies)} prompts: "
                + "; ".join(replies[:5])
                + ("; ..." if len(replies) > 5 else "")
            )
    quiet = not moved and not drift and returncode == 0
    lines = [
        f"# Upgrade check, {date.today()}",
        "",
        "Versions changed: " + ("; ".join(f"{k} {v}" for k, v in changed.items()) or "none") + ".",
        "",
        "## Verdicts and figures beyond their tolerance",
        "",
        *(moved or ["None."]),
        "",
        "## Per-layer snapshots that drifted",
        "",
        *(drift or ["None."]),
        "",
        "## Conclusion",
        "",
        "Nothing moved: safe to take (`./run upgrade-check --take`)."
        if quiet
        else f"Review these before taking them (the candidate's report: `{HOME}/reports/findings.md`).",
        "",
    ]
    return "\n".join(lines), quiet


def take(root: Path) -> str:
    """Move the lock to the last checked candidate."""
    candidate = root / HOME / LOCK
    if not candidate.is_file():
        raise LensError("no candidate checked yet: run `./run upgrade-check package==version ...` first")
    shutil.copyfile(candidate, root / LOCK)
    return f"{LOCK} now pins the candidate versions: `./run tests` installs them; commit the lock with the reason"


def check(root: Path, args: list[str], extra: list[str], say=print) -> int:
    """The whole check: exit status 0 when nothing moved, 1 when something did (the report says what)."""
    wanted = parse_wanted(args) or {name: newest(sys.executable, name) for name in UPGRADED}
    lock_text, changed = candidate_lock((root / LOCK).read_text(), wanted)
    say(f"upgrade-check: candidate versions {', '.join(f'{k}=={v}' for k, v in wanted.items())}")
    python = build(root, lock_text, say)
    done = run_findings(python, root / HOME, say, extra)
    text, quiet = report(root, root / HOME, changed, done.returncode)
    path = root / "reports" / f"upgrade-{date.today()}.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    say(text.split("## Conclusion")[-1].strip().splitlines()[0])
    say(f"report: {path}")
    return 0 if quiet else 1


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(marker: str, platform: str) -> bool:
    """A lock line's `sys_platform` marker, evaluated for `platform`."""
    from packaging.markers import Marker

    return Marker(marker).evaluate({"sys_platform": platform})


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("WARNING")]
    return lines[-1] if lines else "no message"
