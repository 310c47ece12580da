"""Gathers every suite test's outcome and records (from all xdist workers), writes each to the run's journal the
moment it arrives (`suite.journal`), and writes the report at any end of the session: a normal one, an interrupt
(Ctrl-C), SIGTERM or SIGHUP. A model whose selected tests did not all run is marked partial (its column says how
many ran) until a run completes it. A run killed outright leaves its journal, which the next run folds in."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from suite.config import NOTES
from suite.document import RESULTS, set_aside_if_unreadable
from suite.figures import Figure
from suite.journal import Entry, Journal, Orphan, orphans
from suite.keys import FIGURE, IDENTITY, MODEL, RECORDED, SELECTED, SESSION, VERDICT, WARNING
from suite.provenance import library_versions
from suite.results import (
    DataWarning,
    Expected,
    Identity,
    ModelRecord,
    Outcome,
    Results,
    Run,
    TestRecord,
    assemble,
    environment,
    now,
)
from suite.statistics import Label, Verdict

KEYS = (IDENTITY, VERDICT, RECORDED, FIGURE, MODEL, WARNING, SELECTED)
"""The user_properties the report reads (and the journal keeps)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the run ends as an interrupt does, its report written with what it finished."""


class Collected:
    """What the report reads of one run's tests: a TestRecord per test, each model's record, the data warnings, and
    how many tests each model has selected."""

    def __init__(self) -> None:
        self.records: list[TestRecord] = []
        self.models: dict[str, ModelRecord] = {}
        self.warnings: list[DataWarning] = []
        self.selected: dict[str, int] = {}

    def add(self, entry: Entry) -> bool:
        """Take what one test report (setup, call or teardown) carries; whether it carried anything."""
        taken = False
        for key, value in entry.properties:
            if key == MODEL:
                self.models[value["model"]], taken = ModelRecord.from_dict(value), True
            elif key == WARNING and (warning := DataWarning.from_dict(value)) not in self.warnings:
                self.warnings.append(warning)
                taken = True
            elif key == SELECTED and value != self.selected:
                self.selected, taken = dict(value), True
        identity = next((value for key, value in entry.properties if key == IDENTITY), None)
        ends = entry.when == "call" or (entry.when == "setup" and entry.outcome != Outcome.PASSED)
        if identity is None or not ends:
            return taken
        verdicts = [Verdict.from_dict(value) for key, value in entry.properties if key == VERDICT]
        self.records.append(
            TestRecord(
                identity=Identity.from_dict(identity),
                outcome=entry.outcome,
                message=entry.message,
                verdict=next((verdict for verdict in verdicts if not verdict.control), None),
                controls=tuple(verdict for verdict in verdicts if verdict.control),
                recorded=next(
                    (Expected.from_dict(value) for key, value in entry.properties if key == RECORDED and value), None
                ),
                figures=tuple(Figure.from_dict(value) for key, value in entry.properties if key == FIGURE),
            )
        )
        return True

    def results(self, names: list[str], command: str, run: Run | None = None) -> Results:
        """This run's results; a model with fewer tests done than it selected is marked partial."""
        results = replace(assemble(self.records, self.models, names, command, run), warnings=tuple(self.warnings))
        done = {model: sum(model in record.identity.models for record in self.records) for model in results.runs}
        return replace(
            results,
            runs={
                model: replace(run, partial=(done[model], self.selected[model]))
                if done[model] < self.selected.get(model, 0)
                else run
                for model, run in results.runs.items()
            },
        )


class FindingsReport:
    """A plugin object on the controller: the run's tests as they end, the report at any end of the session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.reports_dir = Path(config.getoption("lens_reports") or config.rootpath / "reports")
        kept = set_aside_if_unreadable(self.reports_dir)
        if kept is not None:
            print(
                f"run: {self.reports_dir / RESULTS} could not be read: set aside as {kept}; this run writes a new one",
                file=sys.stderr,
            )
        self.collected = Collected()
        self.journal = Journal(self.reports_dir)
        self.command = " ".join(["pytest", *config.invocation_params.args])
        self.run = environment(now(), self.command, outputs=(self.reports_dir,))
        self.written: tuple[Path, Results, Results] | None = None
        """The report written at session end, this run's results and all results, for the terminal summary."""
        self.handlers: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGTERM", "SIGHUP"):
                number = getattr(signal, name, None)
                if number is not None and signal.getsignal(number) is signal.SIG_DFL:
                    self.handlers[number] = signal.signal(number, _terminated)

    @property
    def records(self) -> list[TestRecord]:
        return self.collected.records

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = tuple((key, value) for key, value in report.user_properties if key in KEYS)
        if not properties:
            return
        entry = Entry(_outcome(report), _message(report), properties, report.when)
        if self.collected.add(entry):
            if self.journal.count == 0:
                with contextlib.suppress(OSError):
                    self.journal.start(
                        {"command": self.command, "names": self.config.stash[SESSION].names, "run": self.run.to_dict()}
                    )
            self.journal.add(entry)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """The report, whatever ended the session (an interrupt too: what finished is kept, marked partial)."""
        left = list(orphans(self.reports_dir))
        if not self.records and not left:
            return
        from suite.document import load_results
        from suite.merge import merge
        from suite.order import ordered
        from suite.report import verdict_changes, write_report
        from suite.versions import update_versions

        reports_dir = self.reports_dir
        suite_session = self.config.stash[SESSION]
        sets = suite_session.prompt_sets
        previous = load_results(reports_dir)
        for orphan in left:  # runs killed outright: what they finished, as theirs, before this run's
            found = ordered(_orphan_results(orphan), sets, previous)
            previous = ordered(
                merge(previous, replace(found, changes=verdict_changes(previous, found))), sets, previous
            )
        notes = self.config.getini(NOTES)
        results = replace(
            self.collected.results(suite_session.names, self.command, self.run),
            absent=dict(suite_session.absent),
            by_construction=(self.config.rootpath / notes).read_text() if notes else "",
        )
        results = ordered(results, sets, previous)
        results = replace(results, changes=verdict_changes(previous, results))
        # The report holds every model's latest results: this run's, and the previous ones it did not redo.
        merged = ordered(merge(previous, results), sets, previous)
        finished = replace(results, runs={m: run for m, run in results.runs.items() if run.partial is None})
        merged = replace(merged, versions=tuple(update_versions(finished, reports_dir, library_versions())))
        self.written = (write_report(merged, reports_dir), results, merged)
        self.journal.close()
        for orphan in left:
            orphan.close()

    def pytest_unconfigure(self) -> None:
        for number, handler in self.handlers.items():
            signal.signal(number, handler)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        """The run's last lines: each model's verdicts on each prompt set in brief, and where the report is."""
        if self.written is None:
            return
        path, results, merged = self.written
        terminalreporter.write_sep("=", "findings")
        for line in brief(results):
            terminalreporter.write_line(line)
        kept = [f"{model} ({run.date})" for model, run in merged.runs.items() if model not in results.runs]
        if kept:
            terminalreporter.write_line(f"kept from earlier runs: {', '.join(kept)}")
        partial = [
            f"{model} ({run.partial[0]} of {run.partial[1]} tests)" for model, run in merged.runs.items() if run.partial
        ]
        if partial:
            terminalreporter.write_line(
                f"partial: {', '.join(partial)}; run again to finish (what was computed is "
                "read back, not computed again)"
            )
        read_back, computed = self.config.stash[SESSION].tally()
        if read_back:
            terminalreporter.write_line(
                f"readings: {read_back} read back from earlier runs, {computed} computed "
                "(--recompute computes them all)"
            )
        terminalreporter.write_line(f"report: {path}")


def _terminated(number: int, frame: Any) -> None:
    raise Terminated(f"{signal.Signals(number).name}: the run stops; what it finished goes into the report")


def _orphan_results(orphan: Orphan) -> Results:
    """What a run killed outright finished, from its journal, as that run's results."""
    collected = Collected()
    for entry in orphan.entries:
        collected.add(entry)
    run = Run.from_dict(orphan.run["run"])
    return collected.results(list(orphan.run.get("names", [])), orphan.run.get("command", run.command), run)


def brief(results: Results) -> list[str]:
    """Per model and prompt set, how many claims came out each way: "smollm2  capitals  2 holds, 3 refuted"."""
    counts: dict[tuple[str, str | None], dict[str, int]] = {}
    for entry in results.claims.values():
        for result in entry.results:
            label = result.verdict.verdict if result.verdict else result.outcome
            for model in result.models:
                tally = counts.setdefault((model, result.prompt_set), {})
                tally[label] = tally.get(label, 0) + 1
    order = (*Label, Outcome.FAILED, Outcome.SKIPPED)
    return [
        f"{model:<10} {prompt_set or '':<16} " + ", ".join(f"{tally[k]} {k}" for k in order if k in tally)
        for (model, prompt_set), tally in counts.items()
    ]


def _outcome(report: pytest.TestReport) -> Outcome:
    if hasattr(report, "wasxfail"):
        return Outcome.XFAILED if report.skipped else Outcome.XPASSED
    return Outcome(report.outcome)


def _message(report: pytest.TestReport) -> str | None:
    if report.passed and not hasattr(report, "wasxfail"):
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    if hasattr(report, "wasxfail") and report.passed:
        return f"XPASS(strict): {report.wasxfail}"
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message.splitlines()[0] if crash else str(report.longrepr).splitlines()[-1]
