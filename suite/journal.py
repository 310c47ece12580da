"""Each test's outcome and records, written to disk the moment the test ends (one file per test, write-then-rename),
so that a run that never reaches its end loses nothing it finished: the report is written from them at any end of
the session (an interrupt and SIGTERM included), and a run killed outright (kill -9, a power cut) leaves them for
the next run, which folds them into its report as that run's, marked partial.

A run's journal is a folder `.journal/<pid>-<start>/` beside the report: `run.json` (the command, when, what
ran) and one `NNNNN.json` per test; it is removed once the report holding it is written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL = ".journal"


@dataclass(frozen=True)
class Entry:
    """One test's report as the collector reads it: its outcome, its message and what it recorded."""

    outcome: str
    message: str | None
    properties: tuple[tuple[str, Any], ...]
    """The test's user_properties the report reads (plain values: they cross xdist too)."""
    when: str = "call"
    """The test's phase the report is of: setup, call or teardown."""

    def to_dict(self) -> dict:
        return {
            "when": self.when,
            "outcome": self.outcome,
            "message": self.message,
            "properties": [list(p) for p in self.properties],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(
            data["outcome"],
            data.get("message"),
            tuple((key, value) for key, value in data["properties"]),
            data.get("when", "call"),
        )


class Journal:
    """One run's journal: started with the run's facts, one entry per test, closed once the report is written."""

    def __init__(self, reports_dir: Path) -> None:
        self.folder = reports_dir / JOURNAL / f"{os.getpid()}-{time.time_ns()}"
        self.count = 0

    def start(self, run: dict[str, Any]) -> None:
        """Note what the run is (read back if it never ends): command, date, models, environment."""
        _write(self.folder / "run.json", run)

    def add(self, entry: Entry) -> None:
        """Write one test's entry whole (a run killed mid-write leaves none, never half of one). One that cannot be
        written (a full disk) is lost to a run killed outright only: the report at the session's end has it."""
        self.count += 1
        with contextlib.suppress(OSError):
            _write(self.folder / f"{self.count:05d}.json", entry.to_dict())

    def close(self) -> None:
        """The report holds the run: its journal goes."""
        _remove(self.folder)


@dataclass(frozen=True)
class Orphan:
    """The journal of a run that ended without writing its report (killed outright)."""

    folder: Path
    run: dict[str, Any]
    entries: tuple[Entry, ...]

    def close(self) -> None:
        """The report holds what the run finished: its journal goes."""
        _remove(self.folder)


def orphans(reports_dir: Path) -> Iterator[Orphan]:
    """The journals of runs whose process is gone, oldest first (a live run's journal is its own business)."""
    root = reports_dir / JOURNAL
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir(), key=lambda p: p.name.partition("-")[2].zfill(24)):
        pid = folder.name.partition("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            run = json.loads((folder / "run.json").read_text())
            entries = tuple(
                Entry.from_dict(json.loads(path.read_text())) for path in sorted(folder.glob("[0-9]*.json"))
            )
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(folder, ignore_errors=True)  # not a journal this code wrote: nothing to fold in
            continue
        yield Orphan(folder, run, entries)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # the last journal: no empty folder left beside the report


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(data, ensure_ascii=False, default=str))
    partial.replace(path)
