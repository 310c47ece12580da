"""The project's pytest plugin: the --model option, one marker per model, and verdict recording.

Verdicts travel in `user_properties` (plain values), so they reach the controller under xdist too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lens.errors import LensError
from lens.registry import registry, resolve
from lens.verdicts import Verdict

VERDICT_PROPERTY = "lens_verdict"
MODEL_PROPERTY = "lens_model"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lens", "layer-by-layer findings")
    group.addoption(
        "--model", action="append", default=[], metavar="NAME_OR_PATH",
        help="run the findings on this model instead of the registry's (repeatable): "
        "a registry name, a Hub repo id, a local model folder or a .gguf file",
    )
    group.addoption(
        "--reports", dest="lens_reports", default=None, metavar="DIR",
        help="where the findings report goes (default: reports/ beside pytest.ini)",
    )
    group.addoption(
        "--device", dest="lens_device", default=None,
        help="cpu, cuda, cuda:N or mps (default: mps > cuda > cpu); non-CPU devices are checked "
        "against the CPU first",
    )


def pytest_configure(config: pytest.Config) -> None:
    for spec in registry().values():
        config.addinivalue_line("markers", f"{spec.name}: findings on {spec.describe()}")
    for name in model_names(config):
        if name not in registry():
            config.addinivalue_line("markers", f"{name}: findings on the model given with --model")
    if not hasattr(config, "workerinput"):  # the xdist controller, or a plain run
        config.pluginmanager.register(FindingsReport(config), "lens-findings-report")


def model_names(config: pytest.Config) -> list[str]:
    """The models the findings run on: those given with --model, else every registered one."""
    given = config.getoption("model", default=[])
    try:
        names = [resolve(value).name for value in given]
    except LensError as error:
        raise pytest.UsageError(f"--model: {error}") from None
    return names or list(registry())


def model_sources(config: pytest.Config) -> dict[str, str]:
    """Model name -> what to load for it (the --model value, or the registry name)."""
    given = config.getoption("model", default=[])
    return {resolve(value).name: value for value in given} or {name: name for name in registry()}


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Callable[[Verdict], None]:
    """Record a claim's verdict for the report."""

    def record(verdict: Verdict, recorded: dict | None = None) -> None:
        request.node.user_properties.append((VERDICT_PROPERTY, verdict.to_dict()))
        request.node.user_properties.append(("lens_recorded", recorded))

    return record



class FindingsReport:
    """Gathers every findings test's outcome and verdict (from all xdist workers) and writes the report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tests: list[dict] = []
        self.models: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.nodeid.startswith("findings/"):
            return
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        properties = dict(report.user_properties)
        if MODEL_PROPERTY in properties:
            record = properties[MODEL_PROPERTY]
            self.models[record["model"]] = record
        self.tests.append({
            "nodeid": report.nodeid,
            "outcome": _outcome(report),
            "message": _message(report),
            "verdict": properties.get(VERDICT_PROPERTY),
            "recorded": properties.get("lens_recorded"),
        })

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.tests or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        from lens.findings_results import assemble
        from lens.report import load_results, verdict_changes, write_report

        reports_dir = Path(self.config.getoption("lens_reports") or self.config.rootpath / "reports")
        results = assemble(self.config, self.tests, self.models, model_names(self.config))
        previous = load_results(reports_dir)
        results["changes"] = verdict_changes(previous, results) if previous else None
        path = write_report(results, reports_dir)
        self.config.get_terminal_writer().line(f"findings report: {path}")


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
