"""reports/findings.md from the findings' results: a verdict matrix per prompt set, each claim with its
figures (per-prompt evidence stays in findings.json), each model's record, and what changed since the
previous run. Written atomically; `./run report` re-renders it from findings.json without running a model."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

from tabulate import tabulate

from lens.errors import LensError
from suite.figures import KLByDepth, overlays
from suite.results import SCHEMA, ClaimResults, DataWarning, Results, Run
from suite.session import findings_command
from suite.statistics import EXACT_LENS, HOLDS, REFUTED, Verdict, family_error

REPORT, RESULTS, FIGURES = "findings.md", "findings.json", "figures"


def load_results(reports_dir: Path) -> Results | None:
    """The results of the last run written to `reports_dir`; None if there are none, or if they are in
    another layout (an older schema: neither merged nor compared, and rewritten by the next run)."""
    path = reports_dir / RESULTS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return None
        return Results.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise LensError(f"{path} is not a findings results file: rerun the findings, which set it aside and "
                        "write a new one") from None


def set_aside_if_unreadable(reports_dir: Path) -> Path | None:
    """Move an unreadable results file out of the way under a dated name (before any model loads, so a run
    never computes for minutes and then cannot write its results); the new name, or None if all is well."""
    try:
        load_results(reports_dir)
    except LensError:
        path = reports_dir / RESULTS
        kept = path.with_name(f"findings.unreadable-{datetime.now():%Y%m%d-%H%M%S}.json")
        path.replace(kept)
        return kept
    return None


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
                        f"{claim}{_in_set(result.prompt_set)}: {old.measured} → {result.measured}")
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
        (staging / RESULTS).write_text(json.dumps(results.to_dict(), indent=1, ensure_ascii=False))
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
    """The Markdown report."""
    models, ran = results.model_order, results.ran
    lines = ["# Findings", ""]
    lines.append(
        f"Last run {results.generated}: `{results.command}`. Each model's results are its latest run's "
        f"(dated in each column): {', '.join(f'{m} {results.runs[m].date}' for m in ran) or 'none'}."
    )
    never = [m for m in models if m not in ran and m not in results.absent]
    if never:
        lines.append("Not run yet: " + "; ".join(f"{m} (`{findings_command('-m ' + m)}`)" for m in never) + ".")
    if results.absent:
        lines.append("Weights not here, so not run: " + "; ".join(
            f"{name} (fetch with `{command}`)" for name, command in results.absent.items()) + ".")
    lines += ["", *_scope(results), "", "## Verdicts", "", _family_error(results, None), ""]
    lenses = results.lenses()
    columns = [(m, lens) for m in ran for lens in lenses if lens == EXACT_LENS or _read_through(results, m, lens)]
    unread = [(m, lens) for m in ran for lens in lenses if (m, lens) not in columns]
    lenses = list(dict.fromkeys(lens for _, lens in columns))
    headers = ["claim", *(f"{m}{_through(lens)} ({results.runs[m].date[:10]}{_partial(results.runs[m])})"
                          for m, lens in columns)]
    if len(lenses) > 1:
        headers.append("lenses")
    notes: list[str] = []
    for prompt_set in results.prompt_sets():
        lines += [f"Prompt set `{prompt_set}`:", ""]
        rows = []
        for entry in results.claims.values():
            if not any(r.prompt_set == prompt_set for r in entry.results):
                continue
            row = [f"{entry.number}. [{entry.title.split(':')[0]}](#{_anchor(entry)})"
                   + (" (exploratory)" if _exploratory(entry) else "")]
            for model, lens in columns:
                result = entry.result_for(model, prompt_set, lens)
                if result is None:
                    row.append("—" if lens != EXACT_LENS and _lensless(entry) else "not run")
                    continue
                text = result.cell
                if text in ("skipped", "failed") or text.startswith("regression"):
                    reason = result.message or ""
                    if reason not in notes:
                        notes.append(reason)
                    text += f" [{notes.index(reason) + 1}]"
                row.append(text)
            if len(lenses) > 1:
                row.append(_agreement(entry, prompt_set, ran, lenses))
            rows.append(row)
        lines += [tabulate(rows, headers=headers, tablefmt="pipe"), "", _family_error(results, prompt_set), ""]
        lines += _fidelity(results, prompt_set)
    lines += ["Each cell: the verdict, its figure [interval] and n (facts), then the verdict after Holm's "
              "adjustment over every verdict of that model and lens in this report. † the verdict flips under another "
              "reasonable threshold (the claim's sensitivity); ‡ a caveat applies (under the claim). `too few`: no "
              "outcome at that n could have decided; `no data`: n = 0. Under each claim, \"could detect\" is the "
              "smallest true share (of prompts, or of facts beyond the threshold for a median) its n decides with "
              "80% power." + (" Columns name the lens where it is not the logit lens; `lenses` says per model "
                               "whether the claim's verdict is the same through every lens read." if len(lenses) > 1
                               else ""),
              ""]
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {note}  ")
    for model, lens in unread:
        lines.append(f"Not read through the {lens} lens: {model} ({_why_unread(results, model, lens)}).  ")
    lines += ["", "## Changes since each model's previous run", ""]
    changes = results.changes or {}
    for model in ran:
        found = changes.get(model)
        lines.append(f"- {model}: " + ("no previous run to compare with" if found is None else
                                       "no verdict changed" if not found else "; ".join(found)) + ".")
    if results.by_construction:
        lines += ["", "## Settled by construction", "", results.by_construction.strip()]
    lines += ["", "## Data warnings", ""]
    lines += [f"- {w.model}, {w.prompt_set}: {w.text}" for w in _warnings(results, ran)] or ["None."]
    lines += ["", "## Claims", ""]
    for claim, entry in results.claims.items():
        lines += _claim_section(claim, entry, figures.get(claim, []))
    lines += ["## Models", ""]
    for model in ran:
        lines += _model_section(model, results)
    lines += _versions_section(list(results.versions))
    return "\n".join(lines)


def _partial(run: Run) -> str:
    """A model whose run stopped before all its tests ran: how many did (until a run completes it)."""
    return f", partial: {run.partial[0]} of {run.partial[1]} tests" if run.partial else ""


def _through(lens: str) -> str:
    return "" if lens == EXACT_LENS else f", {lens} lens"


def _read_through(results: Results, model: str, lens: str) -> bool:
    """Whether some claim has a verdict on `model` through `lens` (a lens the model has none of gives none)."""
    return any(r.verdict for e in results.claims.values() for r in e.results if r.lens == lens and model in r.models)


def _why_unread(results: Results, model: str, lens: str) -> str:
    """Why no claim was read through `lens` on `model`: the first skip's reason."""
    return next((r.message for e in results.claims.values() for r in e.results
                 if r.lens == lens and model in r.models and r.message), "not run")


def _lensless(entry: ClaimResults) -> bool:
    """Whether the claim is read through the logit lens only (its figures are no other lens's: the replies,
    the raw lens against the exact one): "—" in another lens's column."""
    return all(r.lens == EXACT_LENS for r in entry.results)


def _agreement(entry: ClaimResults, prompt_set: str | None, models: list[str], lenses: list[str]) -> str:
    """Per model, whether the claim's verdict is the same through every lens it was read through; where not,
    "lens-dependent", with each lens's fidelity at the claim's deciding depth (neither reading is the model's)."""
    parts = []
    for model in models:
        verdicts = {lens: r.verdict for lens in lenses
                    if (r := entry.result_for(model, prompt_set, lens)) is not None and r.verdict is not None}
        if len(verdicts) < 2:
            continue
        if len({v.verdict for v in verdicts.values()}) == 1:
            parts.append(f"{model}: same")
            continue
        readings = []
        for lens, verdict in verdicts.items():
            kl = next((f["value"] for f in verdict.beside if f["kind"] == "kl"), None)
            readings.append(f"{verdict.verdict} ({lens}" + ("" if kl is None else f", KL {kl:.2f}") + ")")
        parts.append(f"{model}: lens-dependent: " + " / ".join(readings))
    return "; ".join(parts)


def _warnings(results: Results, models: list[str]) -> list[DataWarning]:
    """The data warnings, once each, model by model."""
    unique = {(w.model, w.prompt_set, w.text): w for w in results.warnings}
    return sorted(unique.values(), key=lambda w: (models.index(w.model) if w.model in models else len(models),
                                                   w.prompt_set or "", w.text))


def _anchor(entry: ClaimResults) -> str:
    text = f"{entry.number}-{entry.title}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _family_error(results: Results, prompt_set: str | None) -> str:
    """How many of the decided verdicts (holds or refuted) chance alone may have got wrong, each at its own
    confidence and in its own direction, on one prompt set (None: the whole report, every set, lens and model),
    and how many stay decided after Holm's adjustment."""
    decided = [v for v in results.verdicts() if (prompt_set is None or v.prompt_set == prompt_set)
               and v.verdict in (HOLDS, REFUTED)]
    where = "in this report (every prompt set, lens and model)" if prompt_set is None else "on this set"
    if not decided:
        return f"No verdict decided {where}."
    levels = sorted({v.confidence for v in decided})
    expected, any_wrong = family_error([v.confidence for v in decided])
    kept = sum(v.holm == v.verdict for v in decided)
    return (f"{len(decided)} verdicts decided {where}, each at {' or '.join(f'{c:.1%}' for c in levels)}, each "
            f"erring in its direction at most half its remainder: by chance alone about {expected:.2f} may be wrong "
            f"(were they independent, the chance that at least one is: {any_wrong:.0%}). After Holm's adjustment "
            f"per model and lens, {kept} of the {len(decided)} stay decided, with at most a 5% chance of any wrong "
            "in each model and lens.")


FIDELITY_DEPTHS = (0.25, 0.5, 0.75, 0.9)
"""The relative depths the fidelity table shows (the figure has every block)."""


def _fidelity(results: Results, prompt_set: str | None) -> list[str]:
    """The lenses' fidelity on a prompt set's own prompts: per model, lens and form, the mean KL from the output
    to the lens at a few depths and its largest from 75% of depth on, with each model's figure."""
    found = [f.figure for f in results.figures if isinstance(f.figure, KLByDepth) and f.figure.prompt_set == prompt_set]
    if not found:
        return []
    rows = []
    for figure in found:
        at = {depth: figure.at(depth) for depth in FIDELITY_DEPTHS}
        late = [i for i, d in enumerate(figure.depth) if d >= 0.75 - 1e-9]
        for label, kl in figure.kl.items():
            rows.append([figure.model, f"{figure.lens}, {label}", figure.prompts.get(label, ""),
                         *(f"{at[d][label]:.2f}" for d in at),
                         f"{max(kl[i] for i in late):.2f}"])
    bound = next((f.bound for f in found if f.bound is not None), None)
    sources = [f"{f.model}, {f.lens}: {f.source}" for f in found if f.source]
    return [f"Lens fidelity on `{prompt_set}`: mean KL(output ‖ lens) in nats on the set's own prompts, where the "
            "lens reads them" + (f"; a verdict decided where it exceeds {bound:g} is marked \"lens not faithful "
                                  "here\"" if bound is not None else "") + ".", "",
            tabulate(rows, headers=["model", "lens, form", "prompts", *(f"at {d:.0%}" for d in FIDELITY_DEPTHS),
                                    "max from 75%"], tablefmt="pipe", disable_numparse=True), "",
            *(["Which lens made each column: " + "; ".join(sources) + ".", ""] if sources else []),
            " ".join(f"![{f.file}](figures/{f.file})" for f in found), ""]


def _exploratory(entry: ClaimResults) -> bool:
    """Whether the claim tests one of the notes' next steps rather than a claim they drew."""
    return any(r.verdict and r.verdict.exploratory for r in entry.results)


def _scope(results: Results) -> list[str]:
    """The first screen's scope: which models every verdict is about, their size and quantisation."""
    models = []
    for name in results.ran:
        record = results.models.get(name)
        if record is None:
            models.append(name)
            continue
        size = f"{record.parameters / 1e6:,.0f}M parameters, " if record.parameters else ""
        models.append(f"{name} ({record.source}; {size}{record.n_layers} blocks, {record.dtype} on {record.device})")
    return [f"**Scope.** Every verdict is about the models it names, and only them: {'; '.join(models) or 'none'}. "
            "The notes' claims concern 7-9B models (Llama 3 8B, Mistral 7B, Gemma 2 9B, Qwen3 8B); a verdict here "
            "says what holds on these models, not on those. Claims marked (exploratory) test the notes' next steps, "
            "not claims they drew."]


def _claim_section(claim: str, entry: ClaimResults, figures: list[str]) -> list[str]:
    lines = [f"### {entry.number}. {entry.title}", "", entry.doc, ""]
    rows = []
    for result in entry.results:
        if result.verdict:
            rows.append(_verdict_row(result.label, result.cell, result.verdict))
        else:
            rows.append([result.label, result.cell, result.message or "", "", "", "", "", "", "", ""])
        for control in result.controls:
            rows.append(_verdict_row(f"{result.label}, control", control.cell, control))
    if rows:
        lines += [tabulate(rows, headers=["model", "verdict", "statistic", "value", "interval", "n", "could detect",
                                          "beside", "sensitivity", "caveats"],
                           tablefmt="pipe", disable_numparse=True), ""]
    for figure in figures:
        lines += [f"![{figure}](figures/{figure})", ""]
    if any(result.verdict and result.verdict.evidence for result in entry.results):
        lines += [f"Per-prompt figures: `{RESULTS}`, under `claims.{claim}`.", ""]
    return lines


def _verdict_row(label: str, text: str, verdict: Verdict) -> list:
    """One verdict in a claim's table: its figure, what its n could detect, what stands beside it, how it
    fares under other thresholds, and its caveats."""
    lo, hi = verdict.ci
    flips = [f"{row['threshold']} {row['value']}: {row['verdict']}" for row in verdict.sensitivity
             if row["verdict"] != verdict.verdict]
    tried = len(verdict.sensitivity)
    sensitivity = ("flips at " + "; ".join(flips)) if flips else f"same under all {tried} others" if tried else ""
    return [label, text, verdict.statistic, f"{verdict.value:.3g}", f"{lo:.3g} to {hi:.3g} ({verdict.confidence:.1%})",
            verdict.n, f"{verdict.detectable:.2f}" if verdict.detectable is not None else "",
            "; ".join(f"{f['label']}: {f['value']:.3g}" for f in verdict.beside), sensitivity,
            "; ".join(verdict.caveats)]


def _model_section(model: str, results: Results) -> list[str]:
    record, run = results.models.get(model), results.runs[model]
    lines = [f"### {model}", ""]
    if record:
        lines.append(f"{record.source}; {record.n_layers} layers, {record.dtype} on {record.device}, "
                     f"forward passes by the {record.backend} backend; weights `{record.weights}`.  ")
    libraries = ", ".join(f"{lib} {v}" for lib, v in run.libraries.items())
    stopped = f", stopped after {run.partial[0]} of its {run.partial[1]} tests" if run.partial else ""
    lines += [f"Run {run.date} by `{run.command}` on {run.machine}{stopped}: Python {run.python}, {libraries}.", ""]
    for test, counts in results.checks.get(model, {}).items():
        lines += [f"`{test}`: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped.", ""]
    return lines


def _versions_section(entries: list[dict]) -> list[str]:
    """The library versions the findings ran with (reports/versions.json), and whether everything held."""
    if not entries:
        return []
    rows = [[", ".join(f"{lib} {v}" for lib, v in entry["libraries"].items()), entry["device"], entry["dtype"],
             "; ".join(f"{model} {'held' if run['held'] else 'FAILED'} ({run['date'][:10]})"
                       for model, run in entry["models"].items())] for entry in entries]
    return ["## Library versions tried", "",
            "Every library set the findings ran with here (`versions.json`), and per model whether every figure "
            "and snapshot held against the record.", "",
            tabulate(rows, headers=["libraries", "device", "dtype", "models"], tablefmt="pipe"), ""]


def rerender(reports_dir: Path) -> Path:
    """`./run report`: re-render findings.md and the figures from findings.json."""
    results = load_results(reports_dir)
    if results is None and (reports_dir / RESULTS).is_file():
        raise LensError(f"{reports_dir / RESULTS} is from an earlier layout of the results: rerun the findings "
                        "(`./run findings`) to write it anew")
    if results is None:
        raise LensError(
            f"no {reports_dir / RESULTS} yet: run the findings first (`./run findings`), "
            "then `./run report` re-renders it"
        )
    return write_report(results, reports_dir)
