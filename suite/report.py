"""reports/findings.md from the findings' results: a verdict matrix, each claim with its evidence, each
model with its figures, and what changed since the previous run. Written atomically; `lens report`
re-renders it from reports/findings.json without running any model."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from lens.errors import LensError, command, findings_command
from lens.figures import depth_curves, logit_lens_grid, position_heatmap
from lens.findings_results import CAPITALS

REPORT, RESULTS, FIGURES = "findings.md", "findings.json", "figures"


def load_results(reports_dir: Path) -> dict | None:
    """The results of the last run written to `reports_dir`, if any."""
    path = reports_dir / RESULTS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise LensError(f"{path} is not valid JSON: rerun the findings to rewrite it") from None


def verdict_changes(previous: dict | None, current: dict) -> list[str]:
    """What differs, claim by claim and model by model, from the previous run's verdicts."""
    if previous is None:
        return []
    changes = []
    for claim, entry in current["claims"].items():
        before = previous.get("claims", {}).get(claim, {}).get("results", {})
        for model, result in entry["results"].items():
            if model in before and cell(before[model]) != cell(result):
                changes.append(f"{claim} on {model}: {cell(before[model])} → {cell(result)}")
    return changes


def cell(result: dict) -> str:
    """One verdict-matrix cell: holds / refuted / inconclusive / regression / failed / skipped."""
    verdict, recorded = result.get("verdict"), result.get("recorded")
    if verdict:
        if recorded and recorded["verdict"] != verdict["verdict"]:
            return f"regression: {recorded['verdict']} → {verdict['verdict']}"
        return verdict["verdict"]
    return "skipped" if result["outcome"] == "skipped" else "failed"


def write_report(results: dict, reports_dir: Path) -> Path:
    """Write findings.json, findings.md and the figures; each file appears whole or not at all."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=reports_dir, prefix=".tmp-") as tmp:
        staging = Path(tmp)
        (staging / FIGURES).mkdir()
        figures = _draw_figures(results, staging / FIGURES)
        (staging / RESULTS).write_text(json.dumps(results, indent=1, ensure_ascii=False))
        (staging / REPORT).write_text(render(results, figures))
        old = reports_dir / f".old-{os.getpid()}"
        if (reports_dir / FIGURES).exists():
            (reports_dir / FIGURES).replace(old)
        (staging / FIGURES).replace(reports_dir / FIGURES)
        shutil.rmtree(old, ignore_errors=True)
        (staging / RESULTS).replace(reports_dir / RESULTS)
        (staging / REPORT).replace(reports_dir / REPORT)
    return reports_dir / REPORT


def _draw_figures(results: dict, folder: Path) -> dict[str, list[str]]:
    with warnings.catch_warnings():
        # Tokens in scripts the default font lacks (CJK, say) draw as boxes; that is no error.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return _draw_each(results, folder)


def _draw_each(results: dict, folder: Path) -> dict[str, list[str]]:
    figures: dict[str, list[str]] = {}
    for name, record in results["models"].items():
        figures[name] = []
        if record.get("curves"):
            depth_curves(record, folder / f"{name}-answer-by-depth.png")
            figures[name].append(f"{name}-answer-by-depth.png")
        if record.get("grid"):
            logit_lens_grid(record["grid"], folder / f"{name}-logit-lens.png")
            figures[name].append(f"{name}-logit-lens.png")
        if record.get("attention"):
            att = record["attention"]
            position_heatmap(att["mean"], att["tokens"], f"{name}: attention from the last position, "
                             f"{att['prompt']!r} (heads averaged)", "attention weight",
                             folder / f"{name}-attention.png")
            figures[name].append(f"{name}-attention.png")
        if record.get("patching"):
            patch = record["patching"]
            position_heatmap(patch["restored"], patch["tokens"], f"{name}: patching {patch['clean']!r} "
                             f"into {patch['corrupt']!r}", f"restored share of p({patch['answer']!r})",
                             folder / f"{name}-patching.png", vmin=-0.2, vmax=1.0)
            figures[name].append(f"{name}-patching.png")
    return figures


def render(results: dict, figures: dict[str, list[str]]) -> str:
    """The Markdown report."""
    models = results["model_order"]
    ran = [m for m in models if m in results["models"]]
    lines = ["# Findings", ""]
    lines.append(
        f"Generated {results['generated']} by `{results['command']}`. "
        f"Models run: {', '.join(ran) or 'none'}."
    )
    not_run = [m for m in models if m not in ran]
    if not_run:
        lines.append(f"Not run: {', '.join(not_run)} (see the notes under the matrix).")
    lines += ["", "## Verdicts", ""]
    notes: list[str] = []
    for prompt_set in _prompt_sets(results):
        claims = {c: e for c, e in results["claims"].items()
                  if any(_split(key)[1] == prompt_set for key in e["results"])}
        if prompt_set != CAPITALS:
            lines += [f"Prompt set `{prompt_set}`:", ""]
        rows = []
        for entry in claims.values():
            row = [f"{entry['number']}. [{entry['title'].split(':')[0]}](#{_anchor(entry)})"]
            for model in models:
                result = _result_for(entry, model, prompt_set)
                if result is None:
                    row.append("not run")
                    continue
                text = cell(result)
                if text in ("skipped", "failed") or text.startswith("regression"):
                    reason = result.get("message") or ""
                    if reason not in notes:
                        notes.append(reason)
                    text += f" [{notes.index(reason) + 1}]"
                row.append(text)
            rows.append(row)
        lines += [tabulate(rows, headers=["claim", *models], tablefmt="pipe"), ""]
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {note}  ")
    for model in not_run:
        if not any(_result_for(e, model, CAPITALS) for e in results["claims"].values()):
            lines.append(f"- {model}: not selected in this run; run it with `{findings_command('-m ' + model)}`.  ")
    lines += ["", "## Changes since the previous run", ""]
    changes = results.get("changes")
    if changes is None:
        lines.append("No previous run to compare with.")
    elif changes:
        lines += [f"- {change}" for change in changes]
    else:
        lines.append("No verdict changed.")
    lines += ["", "## Claims", ""]
    for claim, entry in results["claims"].items():
        lines += _claim_section(entry, models)
    lines += ["## Models", ""]
    for model in ran:
        lines += _model_section(model, results, figures.get(model, []))
    lines += ["## Environment", "", tabulate(results["environment"].items(), tablefmt="pipe",
                                            headers=["", ""]), ""]
    return "\n".join(lines)


def _split(key: str) -> tuple[str, str]:
    """A result key, "model", "model@set" or "a+b", as (models, prompt set)."""
    models, _, prompt_set = key.partition("@")
    return models, prompt_set or CAPITALS


def _prompt_sets(results: dict) -> list[str]:
    found = {_split(key)[1] for entry in results["claims"].values() for key in entry["results"]}
    return [CAPITALS, *sorted(found - {CAPITALS})]


def _result_for(entry: dict, model: str, prompt_set: str) -> dict | None:
    for key, result in entry["results"].items():
        models, key_set = _split(key)
        if key_set == prompt_set and model in models.split("+"):
            return result
    return None


def _anchor(entry: dict) -> str:
    text = f"{entry['number']}-{entry['title']}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _claim_section(entry: dict, models: list[str]) -> list[str]:
    lines = [f"### {entry['number']}-{entry['title']}".replace("-", ". ", 1), "", entry["doc"], ""]
    rows = []
    for key, result in entry["results"].items():
        verdict = result.get("verdict")
        if verdict:
            lo, hi = verdict["ci"]
            rows.append([key, cell(result), verdict["statistic"], f"{verdict['value']:.3g}",
                         f"{lo:.3g} to {hi:.3g}", verdict["n"], verdict["rule"]])
        else:
            rows.append([key, cell(result), "", "", "", "", result.get("message") or ""])
    if rows:
        lines += [tabulate(rows, headers=["model", "verdict", "statistic", "value", "95% CI", "n", "rule"],
                           tablefmt="pipe", disable_numparse=True), ""]
    for key, result in entry["results"].items():
        evidence = (result.get("verdict") or {}).get("evidence")
        if evidence:
            frame = pd.DataFrame(evidence)
            lines += [f"<details><summary>Per-prompt figures: {key}</summary>", "",
                      frame.to_markdown(index=False, floatfmt=".3g"), "", "</details>", ""]
    return lines


def _model_section(model: str, results: dict, figures: list[str]) -> list[str]:
    record = results["models"][model]
    lines = [f"### {model}", "", f"{record['source']}; {record['n_layers']} layers, "
             f"{record['dtype']} on {record['device']}; weights `{record['weights']}`.", ""]
    snaps = results.get("snapshots", {}).get(model)
    if snaps:
        lines += [f"Per-layer snapshots: {snaps.get('passed', 0)} match, {snaps.get('failed', 0)} differ.", ""]
    for figure in figures:
        lines += [f"![{figure}](figures/{figure})", ""]
    return lines


def rerender(reports_dir: Path) -> Path:
    """`lens report`: re-render findings.md and the figures from findings.json."""
    results = load_results(reports_dir)
    if results is None:
        raise LensError(
            f"no {reports_dir / RESULTS} yet: run the findings first (`./run findings`), "
            f"then `{command('report')}` re-renders it"
        )
    return write_report(results, reports_dir)
