"""Recorded expectations: the verdict each claim got on each model and prompt set when last recorded
(a TOML file of the science's), checking a new verdict against it, and recording a run's verdicts.

A claim recorded as refuted or inconclusive runs as a strict xfail: the suite passes while the recorded
verdicts hold and fails when one flips, in either direction.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from suite.statistics import HOLDS, NO_DATA, ClaimNotHeld, Verdict, VerdictChanged

HEADER = """\
# Recorded verdicts, per claim, model(s) and prompt set, each with the measured figure that decided it.
# A claim recorded as refuted or inconclusive runs as a strict xfail: a run fails when a verdict flips.
# Written by `./run verdicts --record` from a findings run; never edit a verdict to make a run green.
"""


class Recorded:
    """The recorded verdicts: claim -> models ("a" or "a+b") -> prompt set -> {verdict, figure}."""

    def __init__(self, data: dict) -> None:
        self.data = data

    @classmethod
    def load(cls, path: Path) -> Recorded:
        return cls(tomllib.loads(path.read_text()) if path.is_file() else {})

    def get(self, verdict: Verdict) -> dict | None:
        """The recorded verdict and figure for this verdict's claim, models and prompt set."""
        return self.data.get(verdict.claim, {}).get(verdict.label, {}).get(verdict.prompt_set)


def judge(request: pytest.FixtureRequest, recorded: Recorded,
          record_verdict: Callable[[Verdict, dict | None], None]) -> Callable[[Verdict], None]:
    """A function that records a verdict for the report, then asserts the claim against the record.

    Recorded `holds` (or nothing recorded): the test passes while the claim holds. Recorded otherwise: a
    strict xfail, so a flip to `holds` fails as XPASS, and a change between refuted and inconclusive
    fails outright. Whatever the label, a figure that leaves its recorded interval or an n that changes
    fails too. `no data` skips: it is neither a pass nor an expected failure.
    """

    def judge_(verdict: Verdict) -> None:
        expected = recorded.get(verdict)
        record_verdict(verdict, expected)
        where = f"{verdict.claim} on {verdict.label} ({verdict.prompt_set})"
        if expected:
            drift = figure_drift(verdict, expected)
            if drift:
                raise VerdictChanged(f"{where}: {drift}; recorded {expected['verdict']} ({expected['figure']}), "
                                     f"now {verdict.verdict}: {verdict.figure}")
        if verdict.verdict == NO_DATA:
            pytest.skip(f"{where}: no data: {verdict.figure}; {verdict.rule}")
        if expected and expected["verdict"] != HOLDS:
            request.applymarker(pytest.mark.xfail(
                strict=True, raises=ClaimNotHeld,
                reason=f"recorded {expected['verdict']}: {expected['figure']}",
            ))
            if verdict.verdict not in (HOLDS, expected["verdict"]):
                raise VerdictChanged(
                    f"{where}: recorded {expected['verdict']} ({expected['figure']}), "
                    f"now {verdict.verdict}: {verdict.figure}; {verdict.rule}"
                )
        if verdict.verdict != HOLDS:
            was = f" (recorded {expected['verdict']}: {expected['figure']})" if expected else ""
            raise ClaimNotHeld(f"{where}: {verdict.verdict}{was}: {verdict.figure}; {verdict.rule}")

    return judge_


def figure_drift(verdict: Verdict, expected: dict) -> str | None:
    """How a verdict's figure moved from the recorded one, if it did beyond the recorded interval:
    n changed, data appeared or vanished, or the value left the recorded interval. None: no real drift
    (a value within the recorded interval is a near-tie, not a change)."""
    if (verdict.verdict == NO_DATA) != (expected["verdict"] == NO_DATA):
        return "the data changed (no data on one side only)"
    if "n" not in expected:
        return None  # recorded before figures were: the label is all there is to compare
    if verdict.n != expected["n"]:
        return f"n changed from {expected['n']} to {verdict.n}"
    lo, hi = expected["ci"]
    slack = 1e-9 + 1e-6 * max(abs(lo), abs(hi))
    value = verdict.value
    if value == value and lo == lo and not lo - slack <= value <= hi + slack:
        return f"the figure {value:.4g} left the recorded interval [{lo:.4g}, {hi:.4g}]"
    return None


def render_recorded(results: dict) -> str:
    """The TOML text recording every verdict of the results, with its figure and each model's run."""
    lines = [HEADER.rstrip()]
    for name, run in results["runs"].items():
        record = results["models"].get(name, {"dtype": "?", "device": "?"})
        lines.append(f"# {name}: measured {run['date']} by `{run['command']}` on {run['machine']}, "
                     f"{record['dtype']} on {record['device']}, torch {run['torch']}, "
                     f"transformers {run['transformers']}, transformer-lens {run['transformer-lens']}.")
    lines.append("")
    for claim, entry in results["claims"].items():
        by_models: dict[str, list[dict]] = {}
        for result in entry["results"]:
            if result.get("verdict"):
                by_models.setdefault("+".join(result["verdict"]["models"]), []).append(result["verdict"])
        for models, verdicts in by_models.items():
            lines.append(f"[{claim}.{json.dumps(models)}]")
            for verdict in verdicts:
                lines.append(
                    f"{verdict['prompt_set']} = {{ verdict = {json.dumps(verdict['verdict'])}, "
                    f"value = {_number(verdict['value'])}, ci = [{_number(verdict['ci'][0])}, "
                    f"{_number(verdict['ci'][1])}], n = {verdict['n']}, "
                    f"figure = {json.dumps(verdict['figure'], ensure_ascii=False)} }}"
                )
            lines.append("")
    return "\n".join(lines)


def _number(x: float) -> str:
    """A float as TOML writes it (nan included)."""
    return "nan" if x != x else repr(float(x))


def write_recorded(results: dict, path: Path) -> None:
    """Replace the recorded verdicts file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_recorded(results))
    tmp.replace(path)
