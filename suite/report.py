"""reports/findings.md from the findings' results: the first screen (`suite.screen`: each column's run, the data
warnings, a verdict matrix per prompt set), what changed since the previous run, then each claim with its figures
(`suite.sections`; per-prompt evidence stays in findings.json) and each model's record. Written atomically;
`./run report` re-renders it from findings.json without running a model."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from suite import screen, sections
from suite.document import RESULTS, dumps, load_results
from suite.figures import overlays
from suite.results import Results

REPORT, FIGURES = "findings.md", "figures"


def verdict_changes(previous: Results | None, current: Results) -> dict[str, list[str]] | None:
    """Per model this run ran, what differs from that model's previous results, claim by claim and prompt
    set by prompt set (None: no previous results to compare with)."""
    if previous is None:
        return None
    changes: dict[str, list[str]] = {model: [] for model in current.runs if model in previous.runs}
    for claim, entry in current.claims.items():
        before = {r.key: r for r in previous.claims[claim].results} if claim in previous.claims else {}
        for result in entry.results:
            old = before.get(result.key)
            if old is not None and old.measured != result.measured:
                for model in result.models:
                    changes.setdefault(model, []).append(
                        f"{claim}{_in_set(result.prompt_set)}: {old.measured} → {result.measured}"
                    )
    return changes


def _in_set(prompt_set: str | None) -> str:
    return f" ({prompt_set})" if prompt_set else ""


def write_report(results: Results, reports_dir: Path) -> Path:
    """Write findings.json, findings.md and the figures, every verdict with its Holm adjustment over the
    report; each file appears whole or not at all."""
    results = results.with_holm()
    reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=reports_dir, prefix=".tmp-") as tmp:
        staging = Path(tmp)
        (staging / FIGURES).mkdir()
        figures = _draw_figures(results, staging / FIGURES)
        (staging / RESULTS).write_text(dumps(results))
        (staging / REPORT).write_text(render(results, figures))
        old = reports_dir / f".old-{os.getpid()}"
        if (reports_dir / FIGURES).exists():
            (reports_dir / FIGURES).replace(old)
        (staging / FIGURES).replace(reports_dir / FIGURES)
        shutil.rmtree(old, ignore_errors=True)
        (staging / RESULTS).replace(reports_dir / RESULTS)
        (staging / REPORT).replace(reports_dir / REPORT)
    return reports_dir / REPORT


def _draw_figures(results: Results, folder: Path) -> dict[str, list[str]]:
    """Draw every recorded figure; claim id -> its figures' file names."""
    drawn: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        # Tokens in scripts the default font lacks (CJK, say) draw as boxes; that is no error.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        for claim in dict.fromkeys(f.claim for f in results.figures):
            # A picture several models share is drawn once more with every model overlaid, first.
            own = [f.figure for f in results.figures if f.claim == claim]
            for figure in [*overlays(own), *own]:
                figure.draw(folder / figure.file)
                drawn.setdefault(claim, []).append(figure.file)
    return drawn


def render(results: Results, figures: dict[str, list[str]]) -> str:
    """The Markdown report: the first screen (runs, scope, data warnings, verdict matrices), then each claim in
    full, the models, the library versions, the data warnings' facts, and the claims' link labels."""
    refs, definitions = sections.references(results)
    lines = [*screen.header(results), "", *screen.data_warnings(results)]
    lines += screen.verdicts(results, refs, screen.Notes())
    lines += ["", "## Changes since each model's previous run", ""]
    changes = results.changes or {}
    for model in results.ran:
        found = changes.get(model)
        if found:
            lines += [f"- {model}:", *(f"  - {change}" for change in found)]
        else:
            lines.append(f"- {model}: {'no previous run to compare with' if found is None else 'no verdict changed'}.")
    if results.by_construction:
        lines += ["", "## Settled by construction", "", results.by_construction.strip()]
    lines += [
        "",
        *sections.claims(results, figures),
        *sections.models(results),
        *sections.versions(list(results.versions)),
        *sections.warnings_in_full(results),
        *definitions,
    ]
    return "\n".join(lines)


def rerender(reports_dir: Path) -> Path:
    """`./run report`: re-render findings.md and the figures from findings.json."""
    results = load_results(reports_dir)
    if results is None:
        from lens.errors import LensError  # only to raise: the lens package imports torch, which rendering needs not

        if (reports_dir / RESULTS).is_file():
            raise LensError(
                f"{reports_dir / RESULTS} is from an earlier layout of the results: rerun the findings "
                "(`./run findings`) to write it anew"
            )
        raise LensError(
            f"no {reports_dir / RESULTS} yet: run the findings first (`./run findings`), "
            "then `./run report` re-renders it"
        )
    return write_report(results, reports_dir)
