"""The report after its first screen: each claim with its full title, definition, figures and every verdict's
numbers; each model's record and run; the library versions tried; the data warnings' facts in full."""

from __future__ import annotations

from tabulate import tabulate

from suite.document import RESULTS
from suite.markdown import lens_name
from suite.results import EDGE, LEFT_OUT, ClaimResults, Result, Results
from suite.screen import hidden, shown_warnings, stamp, unrun
from suite.statistics import EXACT_LENS, Verdict


def anchor(entry: ClaimResults) -> str:
    """The in-page anchor of a claim's section (its heading, as GitHub makes anchors)."""
    text = f"{entry.number}-{entry.title}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def claims(results: Results, figures: dict[str, list[str]]) -> list[str]:
    """Every claim's section, without the results of a lens that could not run (named once on the first screen)."""
    lost = unrun(results)
    lines = ["## Claims", ""]
    for claim, entry in results.claims.items():
        lines += _claim(claim, entry, [r for r in entry.results if not hidden(r, lost)], figures.get(claim, []))
    return lines


def _claim(claim: str, entry: ClaimResults, results: list[Result], figures: list[str]) -> list[str]:
    lines = [f"### {entry.number}. {entry.title}", "", entry.doc, ""]
    named = len({r.lens for r in results}) > 1 or any(r.lens != EXACT_LENS for r in results)
    rows = []
    for result in results:
        label = _label(result, named)
        if result.verdict:
            rows.append(_verdict_row(label, result.cell, result.verdict))
        else:
            rows.append([label, result.cell, result.message or "", "", "", "", "", "", "", ""])
        for control in result.controls:
            rows.append(_verdict_row(f"{label}, control", control.cell, control))
    if rows:
        lines += [
            tabulate(
                rows,
                headers=[
                    "model",
                    "verdict",
                    "statistic",
                    "value",
                    "interval",
                    "n",
                    "could detect",
                    "beside",
                    "sensitivity",
                    "caveats",
                ],
                tablefmt="pipe",
                disable_numparse=True,
            ),
            "",
        ]
    for figure in figures:
        lines += [f"![{figure}](figures/{figure})", ""]
    if any(result.verdict and result.verdict.evidence for result in results):
        lines += [f"Per-prompt figures: `{RESULTS}`, under `claims.{claim}`.", ""]
    return lines


def _label(result: Result, lens_named: bool) -> str:
    """ "smollm2 (capitals)", "smollm2+gemma3 (capitals)"; with the lens where the claim is read through several:
    "smollm2 (capitals, tuned)"."""
    where = [result.prompt_set or "", lens_name(result.lens) if lens_named else ""]
    return "+".join(result.models) + (f" ({', '.join(w for w in where if w)})" if any(where) else "")


def _verdict_row(label: str, text: str, verdict: Verdict) -> list:
    """One verdict in a claim's table: its figure, what its n could detect, what stands beside it, how it
    fares under other thresholds, and its caveats."""
    lo, hi = verdict.ci
    flips = [
        f"{row.threshold} {row.value}: {row.verdict}" for row in verdict.sensitivity if row.verdict != verdict.verdict
    ]
    tried = len(verdict.sensitivity)
    sensitivity = ("flips at " + "; ".join(flips)) if flips else f"same under all {tried} others" if tried else ""
    return [
        label,
        text,
        verdict.statistic,
        f"{verdict.value:.3g}",
        f"{lo:.3g} to {hi:.3g} ({verdict.confidence:.1%})",
        verdict.n,
        f"{verdict.detectable:.2f}" if verdict.detectable is not None else "",
        "; ".join(f"{f.label}: {f.value:.3g}" for f in verdict.beside),
        sensitivity,
        "; ".join(verdict.caveats),
    ]


def models(results: Results) -> list[str]:
    """Each model's record, its latest run and its per-model checks."""
    lines = ["## Models", ""]
    for model in results.ran:
        record, run = results.models.get(model), results.runs[model]
        lines += [f"### {model}", ""]
        if record:
            lines.append(
                f"{record.source}; {record.n_layers} layers, {record.dtype} on {record.device}, "
                f"forward passes by the {record.backend} backend; weights `{record.weights}`.  "
            )
        stopped = f", stopped after {run.partial[0]} of its {run.partial[1]} tests" if run.partial else ""
        lines += [f"Latest run {run.date} by `{run.command}`{stopped}: {stamp(run)}, commit {run.code.text}.", ""]
        for test, counts in results.checks.get(model, {}).items():
            lines += [
                f"`{test}`: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped.",
                "",
            ]
    return lines


def versions(entries: list[dict]) -> list[str]:
    """The library versions the findings ran with (reports/versions.json), and whether everything held."""
    if not entries:
        return []
    rows = [
        [
            ", ".join(f"{lib} {v}" for lib, v in entry["libraries"].items()),
            entry["device"],
            entry["dtype"],
            "; ".join(
                f"{model} {'held' if run['held'] else 'FAILED'} ({run['date'][:10]})"
                for model, run in entry["models"].items()
            ),
        ]
        for entry in entries
    ]
    return [
        "## Library versions tried",
        "",
        "Every library set the findings ran with here (`versions.json`), and per model whether every figure "
        "and snapshot held against the record.",
        "",
        tabulate(rows, headers=["libraries", "device", "dtype", "models"], tablefmt="pipe"),
        "",
    ]


def warnings_in_full(results: Results) -> list[str]:
    """Every data warning with its facts: the replies at an edge with their margins, the facts left out and why."""
    found = shown_warnings(results)
    if not found:
        return []
    lines = ["## Data warnings in full", ""]
    edge = [w for w in found if w.kind == EDGE]
    if edge:
        lines += ["Replies at an edge, each fact with the margin its reply won by:", ""]
        lines += [f"- {w.model}, {w.prompt_set}, {w.form}: {', '.join(w.facts)}" for w in edge]
        lines.append("")
    left = [w for w in found if w.kind == LEFT_OUT]
    if left:
        lines += ["Facts left out:", ""]
        lines += [f"- {w.model}, {w.prompt_set}: {', '.join(w.facts)} ({w.text})" for w in left]
        lines.append("")
    other = [w for w in found if w.kind not in (EDGE, LEFT_OUT)]
    lines += [f"- {w.model}, {w.prompt_set}: {w.text}" for w in other]
    return [*lines, ""] if other else lines


def references(results: Results) -> tuple[dict[str, str], list[str]]:
    """Short link labels for the claims ("c1", ...) and their definitions, which close the report (a matrix
    links each claim by a label, not by its section's long anchor)."""
    refs = {claim: f"c{i}" for i, claim in enumerate(results.claims, 1)}
    return refs, [f"[{refs[claim]}]: #{anchor(entry)}" for claim, entry in results.claims.items()]
