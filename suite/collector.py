"""Gathers every suite test's outcome and records (from all xdist workers) and writes the report at the
end of the session (not on an interrupt: the previous report stays whole)."""

from __future__ import annotations

import sys
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import pytest

from suite.figures import Figure
from suite.keys import FIGURE, IDENTITY, MODEL, RECORDED, SESSION, VERDICT, WARNING
from suite.report import set_aside_if_unreadable
from suite.results import DataWarning, Identity, ModelRecord, Results, TestRecord, assemble
from suite.statistics import Verdict


class FindingsReport:
    """A plugin object on the controller: one TestRecord per suite test, the report at session end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.reports_dir = Path(config.getoption("lens_reports") or config.rootpath / "reports")
        kept = set_aside_if_unreadable(self.reports_dir)
        if kept is not None:
            print(f"run: {self.reports_dir / 'findings.json'} could not be read: set aside as {kept}; "
                  "this run writes a new one", file=sys.stderr)
        self.records: list[TestRecord] = []
        self.models: dict[str, ModelRecord] = {}
        self.warnings: list[DataWarning] = []
        self.written: tuple[Path, Results, Results] | None = None
        """The report written at session end, this run's results and all results, for the terminal summary."""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = report.user_properties
        for key, value in properties:
            if key == MODEL:
                self.models[value["model"]] = ModelRecord.from_dict(value)
            elif key == WARNING and (warning := DataWarning.from_dict(value)) not in self.warnings:
                self.warnings.append(warning)
        identity = next((value for key, value in properties if key == IDENTITY), None)
        if identity is None:
            return
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        verdicts = [Verdict.from_dict(value) for key, value in properties if key == VERDICT]
        self.records.append(TestRecord(
            identity=Identity.from_dict(identity),
            outcome=_outcome(report),
            message=_message(report),
            verdict=next((verdict for verdict in verdicts if not verdict.control), None),
            controls=tuple(verdict for verdict in verdicts if verdict.control),
            recorded=next((value for key, value in properties if key == RECORDED), None),
            figures=tuple(Figure.from_dict(value) for key, value in properties if key == FIGURE),
        ))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.records or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        from suite.merge import merge
        from suite.report import load_results, verdict_changes, write_report
        from suite.versions import LIBRARIES, update_versions

        reports_dir = self.reports_dir
        suite_session = self.config.stash[SESSION]
        command = " ".join(["pytest", *self.config.invocation_params.args])
        notes = self.config.getini("lens_report_notes")
        results = replace(
            assemble(self.records, self.models, suite_session.names, command),
            warnings=tuple(self.warnings), absent=dict(suite_session.absent),
            by_construction=(self.config.rootpath / notes).read_text() if notes else "")
        previous = load_results(reports_dir)
        results = replace(results, changes=verdict_changes(previous, results))
        # The report holds every model's latest results: this run's, and the previous ones it did not redo.
        merged = merge(previous, results)
        merged = replace(merged, versions=tuple(
            update_versions(results, reports_dir, {lib: version(lib) for lib in LIBRARIES})))
        self.written = (write_report(merged, reports_dir), results, merged)

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
        terminalreporter.write_line(f"report: {path}")


def brief(results: Results) -> list[str]:
    """Per model and prompt set, how many claims came out each way: "smollm2  capitals  2 holds, 3 refuted"."""
    counts: dict[tuple[str, str | None], dict[str, int]] = {}
    for entry in results.claims.values():
        for result in entry.results:
            label = result.verdict.verdict if result.verdict else result.outcome
            for model in result.models:
                tally = counts.setdefault((model, result.prompt_set), {})
                tally[label] = tally.get(label, 0) + 1
    order = ("holds", "refuted", "inconclusive", "too few", "no data", "failed", "skipped")
    return [f"{model:<10} {prompt_set or '':<16} " + ", ".join(f"{tally[k]} {k}" for k in order if k in tally)
            for (model, prompt_set), tally in counts.items()]


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


def _message(report: pytest.TestReport) -> str | None:
    if report.passed and not hasattr(report, "wasxfail"):
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    if hasattr(report, "wasxfail") and report.passed:
        return f"XPASS(strict): {report.wasxfail}"
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message.splitlines()[0] if crash else str(report.longrepr).splitlines()[-1]
