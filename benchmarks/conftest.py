"""Benchmark fixtures, and the ratios (benchmarks/targets.toml) computed at the end of the run and
compared with the committed baseline (benchmarks/baseline.json)."""

from __future__ import annotations

import json
import platform
import tomllib
from pathlib import Path

import pytest
from tabulate import tabulate

HERE = Path(__file__).parent
TARGETS = tomllib.loads((HERE / "targets.toml").read_text())
BASELINE = HERE / "baseline.json"
SLOWER = 1.2
"""A ratio this many times its baseline's is reported as slower."""

MEASURED = pytest.StashKey[dict[str, dict[str, float]]]()
"""model -> figure name -> value, on config.stash for the run."""


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MEASURED] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-baseline", action="store_true", help="write this run's ratios to benchmarks/baseline.json"
    )


@pytest.fixture
def measure(benchmark, request):
    """Run a benchmark and keep its median (seconds) under `name` for the model of this test."""
    model = request.getfixturevalue("model").name

    def run(name: str, fn, *, rounds: int | None = None, setup=None):
        if rounds is None:
            benchmark(fn)
        else:
            benchmark.pedantic(fn, rounds=rounds, iterations=1, setup=setup)
        request.config.stash[MEASURED].setdefault(model, {})[name] = benchmark.stats.stats.median

    return run


@pytest.fixture
def record(request):
    """Keep a figure that is not a timing (bytes) for the model of this test."""

    def keep(model: str, name: str, value: float) -> None:
        request.config.stash[MEASURED].setdefault(model, {})[name] = value

    return keep


def ratios(measured: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for model, figures in measured.items():
        for key, spec in TARGETS.items():
            if spec["numerator"] in figures and spec["denominator"] in figures:
                out.setdefault(model, {})[key] = figures[spec["numerator"]] / figures[spec["denominator"]]
    return out


def pytest_terminal_summary(terminalreporter, config) -> None:
    measured = config.stash[MEASURED]
    current = ratios(measured)
    if not current:
        return
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {"ratios": {}}
    rows, slower = [], []
    for model, figures in current.items():
        for key, value in figures.items():
            target = TARGETS[key].get("target")
            before = baseline["ratios"].get(model, {}).get(key)
            status = "measured" if target is None else "met" if value <= target else "MISSED"
            if before and value > SLOWER * before:
                slower.append(f"{model} {key}: {value:.3g} (baseline {before:.3g})")
            rows.append(
                [
                    model,
                    key,
                    f"{value:.3g}",
                    f"<= {target:g}" if target else "",
                    status,
                    f"{before:.3g}" if before else "",
                    TARGETS[key]["what"],
                ]
            )
    terminalreporter.write_sep("=", "lens benchmarks: ratios measured in this run")
    terminalreporter.write_line(tabulate(rows, headers=["model", "ratio", "value", "target", "", "baseline", "what"]))
    terminalreporter.write_line("slower than the baseline: " + ("; ".join(slower) or "nothing"))
    result = {"machine": machine(), "ratios": current, "figures": measured}
    (HERE / "latest.json").write_text(json.dumps(result, indent=1))
    if config.getoption("update_baseline"):
        BASELINE.write_text(json.dumps(result, indent=1))
        terminalreporter.write_line(f"baseline updated: {BASELINE}")


def machine() -> str:
    import os

    import psutil
    import torch

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__}"
    )
