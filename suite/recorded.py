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

from suite.keys import SESSION
from suite.results import Expected, Results
from suite.statistics import ClaimNotHeld, Label, Verdict, VerdictChanged

HEADER = """\
# Recorded verdicts, per claim, model(s) (@lens where not the logit lens) and prompt set, each with the
# measured figure that decided it.
# A claim recorded as refuted or inconclusive runs as a strict xfail: a run fails when a verdict flips.
# Written by `./run verdicts --record` from a findings run; never edit a verdict to make a run green.
"""


class Recorded:
    """The recorded verdicts: claim -> models ("a" or "a+b") -> prompt set -> {verdict, figure}, and how far
    each kind of figure may move before it is drift (`tolerance`: kind -> largest change, `n` for facts; a
    sub-table per other dtype overrides them for a run in that dtype)."""

    def __init__(self, data: dict, tolerance: dict | None = None) -> None:
        self.data = data
        self.tolerance = tolerance or {}

    def tolerance_for(self, dtype: str = "float32") -> dict[str, float]:
        """The tolerances for a run in `dtype` (the recorded run's own, float32, where none is declared)."""
        base = {kind: value for kind, value in self.tolerance.items() if not isinstance(value, dict)}
        return base | self.tolerance.get(dtype, {})

    @classmethod
    def load(cls, path: Path, tolerance: dict[str, float] | None = None) -> Recorded:
        return cls(tomllib.loads(path.read_text()) if path.is_file() else {}, tolerance)

    def get(self, verdict: Verdict) -> Expected | None:
        """The recorded verdict and figure for this verdict's claim, models, lens and prompt set."""
        found = self.data.get(verdict.claim, {}).get(verdict.recorded_as, {}).get(verdict.prompt_set)
        return Expected.from_dict(found) if found is not None else None


def judge(
    request: pytest.FixtureRequest, recorded: Recorded, record_verdict: Callable[[Verdict, Expected | None], None]
) -> Callable[[Verdict], None]:
    """A function that records a verdict for the report, then asserts the claim against the record.

    Recorded `holds` (or nothing recorded): the test passes while the claim holds. Recorded otherwise: a
    strict xfail, so a flip to `holds` fails as XPASS, and a change between refuted and inconclusive
    fails outright, except at a near-tie (both ends of the interval within the tolerance of the recorded
    ones: skipped, with what moved). Whatever the label, a figure (or a figure beside it, or n) that moves
    further than its kind's tolerance fails. `no data` and `too few` skip: neither a pass nor a failure.
    """

    def judge_(verdict: Verdict) -> None:
        expected = recorded.get(verdict)
        record_verdict(verdict, expected)
        where = verdict.where
        if expected:
            tolerance = recorded.tolerance_for(_dtype(request, verdict))
            drift = figure_drift(verdict, expected, tolerance)
            if drift:
                raise VerdictChanged(
                    f"{where}: {drift}; recorded {expected.verdict} ({expected.figure}), "
                    f"now {verdict.verdict}: {verdict.figure}"
                )
            if verdict.verdict != expected.verdict and near_tie(verdict, expected, tolerance):
                pytest.skip(
                    f"{where}: recorded {expected.verdict}, now {verdict.verdict} at a near-tie: the "
                    f"interval ends moved within the tolerance ({verdict.figure}); not a change"
                )
        if verdict.verdict in (Label.NO_DATA, Label.TOO_FEW):
            pytest.skip(f"{where}: {verdict.verdict}: {verdict.figure}; {verdict.rule}")
        if expected and expected.verdict != Label.HOLDS:
            request.applymarker(
                pytest.mark.xfail(
                    strict=True,
                    raises=ClaimNotHeld,
                    reason=f"recorded {expected.verdict}: {expected.figure}",
                )
            )
            if verdict.verdict not in (Label.HOLDS, expected.verdict):
                raise VerdictChanged(
                    f"{where}: recorded {expected.verdict} ({expected.figure}), "
                    f"now {verdict.verdict}: {verdict.figure}; {verdict.rule}"
                )
        if verdict.verdict != Label.HOLDS:
            was = f" (recorded {expected.verdict}: {expected.figure})" if expected else ""
            raise ClaimNotHeld(f"{where}: {verdict.verdict}{was}: {verdict.figure}; {verdict.rule}")

    return judge_


def _dtype(request: pytest.FixtureRequest, verdict: Verdict) -> str:
    """The dtype the verdict's model(s) ran in (the least precise, for a claim across models)."""
    session = request.config.stash.get(SESSION, None)
    records = [session.artefacts(m).record for m in verdict.models] if session is not None else []
    dtypes = {record.dtype for record in records if record is not None}
    return next((dtype for dtype in ("float16", "bfloat16") if dtype in dtypes), "float32")


def figure_drift(verdict: Verdict, expected: Expected, tolerance: dict[str, float]) -> str | None:
    """How a verdict's figures moved from the recorded ones, where they moved further than the tolerance
    of their kind (claims.toml [tolerance], measured): n, the value, each figure beside it. None: no real
    drift (a change within tolerance is float error or a near-tie, not a change)."""
    if (verdict.verdict == Label.NO_DATA) != (expected.verdict == Label.NO_DATA):
        return "the data changed (no data on one side only)"
    if expected.n is None:
        return None  # recorded before figures were: the label is all there is to compare
    if abs(verdict.n - expected.n) > tolerance.get("n", 0):
        return f"n changed from {expected.n} to {verdict.n} (tolerance {tolerance.get('n', 0):g})"
    moved = _moved(verdict.value, expected.value, tolerance.get(expected.kind or verdict.kind))
    if moved:
        return f"the figure {moved}"
    now = {figure.label: figure for figure in verdict.beside}
    for figure in expected.beside:
        if figure.label in now:
            moved = _moved(now[figure.label].value, figure.value, tolerance.get(figure.kind))
            if moved:
                return f"{figure.label!r} {moved}"
    return None


def near_tie(verdict: Verdict, expected: Expected, tolerance: dict[str, float]) -> bool:
    """Whether a verdict that flipped did so at its threshold within noise: both ends of its interval within
    the tolerance of its kind of the recorded ones (and n within its own: `figure_drift` has checked it)."""
    if expected.ci is None or Label.NO_DATA in (expected.verdict, verdict.verdict):
        return False
    limit = tolerance.get(expected.kind or verdict.kind)
    return limit is not None and all(_moved(new, old, limit) is None for new, old in zip(verdict.ci, expected.ci))


def _moved(new: float, old: float, tolerance: float | None) -> str | None:
    """How `new` differs from `old` where it is further than `tolerance` (nan on one side only, too)."""
    if tolerance is None or (new != new and old != old):
        return None
    if (new != new) != (old != old) or abs(new - old) > tolerance + 1e-9:
        return f"moved from {old:.4g} to {new:.4g} (tolerance {tolerance:g})"
    return None


def render_recorded(results: Results) -> str:
    """The TOML text recording every verdict of the results, with its figure and each model's run."""
    lines = [HEADER.rstrip()]
    for name, run in results.runs.items():
        record = results.models.get(name)
        libraries = ", ".join(f"{lib} {v}" for lib, v in run.libraries.items())
        lines.append(
            f"# {name}: measured {run.date} by `{run.command}` on {run.machine}, "
            f"{record.dtype if record else '?'} on {record.device if record else '?'}, {libraries}, "
            f"code {run.code.text}."
        )
    lines.append("")
    for claim, entry in results.claims.items():
        by_models: dict[str, list[Verdict]] = {}
        for result in entry.results:
            if result.verdict:
                by_models.setdefault(result.verdict.recorded_as, []).append(result.verdict)
        for models, verdicts in by_models.items():
            lines.append(f"[{claim}.{json.dumps(models)}]")
            for verdict in verdicts:
                kept = Expected.of(verdict)
                figures = ", ".join(
                    f"{{ label = {json.dumps(f.label, ensure_ascii=False)}, value = {_number(f.value)}, "
                    f"kind = {json.dumps(f.kind)} }}"
                    for f in kept.beside
                )
                lines.append(
                    f"{verdict.prompt_set} = {{ verdict = {json.dumps(kept.verdict.value)}, "
                    f"value = {_number(kept.value)}, ci = [{_number(kept.ci[0])}, "
                    f"{_number(kept.ci[1])}], n = {kept.n}, kind = {json.dumps(kept.kind)}, "
                    f"figure = {json.dumps(kept.figure, ensure_ascii=False)}, beside = [{figures}] }}"
                )
            lines.append("")
    return "\n".join(lines)


def _number(x: float) -> str:
    """A float as TOML writes it (nan included)."""
    return "nan" if x != x else repr(float(x))


def write_recorded(results: Results, path: Path) -> None:
    """Replace the recorded verdicts file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_recorded(results))
    tmp.replace(path)
