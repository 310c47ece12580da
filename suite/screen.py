"""The report's first screen: which run made each column, the scope, the lenses that could not run (once), the data
warnings as one table, and a verdict matrix per prompt set (claims by short name, each cell the verdict in brief;
the full figures are under each claim)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

from suite.config import findings_command
from suite.figures import KLByDepth
from suite.markdown import lens_name, table
from suite.results import EDGE, LEFT_OUT, ClaimResults, DataWarning, Outcome, Result, Results, Run
from suite.statistics import EXACT_LENS, Label, family_error

Column = tuple[str, str]
"""A verdict-matrix column: (model, lens)."""

SHORT = 32
"""The longest a claim's short name may be in a matrix (the notes' short names are at most 30 characters)."""

FIDELITY_DEPTHS = (0.25, 0.5, 0.75, 0.9)
"""The relative depths the fidelity table shows (the figure has every block)."""


class Notes:
    """The numbered reasons cells point to ("skipped [3]"), each reason once."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str | None) -> str:
        reason = reason or ""
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"


def unrun(results: Results) -> dict[str, dict[str, str]]:
    """The lenses (other than the logit lens) that gave a model no verdict on any claim: lens -> model -> why
    (the first reason its results give, a one-model result's first)."""
    found: dict[Column, list[Result]] = {}
    for entry in results.claims.values():
        for result in entry.results:
            if result.lens != EXACT_LENS:
                for model in result.models:
                    found.setdefault((model, result.lens), []).append(result)
    lost: dict[str, dict[str, str]] = {}
    for (model, lens), found_results in found.items():
        if model in results.runs and not any(r.verdict for r in found_results):
            ordered = sorted(found_results, key=lambda r: len(r.models))
            lost.setdefault(lens, {})[model] = next((r.message for r in ordered if r.message), None) or "not run"
    return lost


def hidden(result: Result, lost: dict[str, dict[str, str]]) -> bool:
    """Whether a result is one of a lens that could not run on any of its models (named once, not row by row)."""
    return all(model in lost.get(result.lens, {}) for model in result.models)


def columns(results: Results) -> list[Column]:
    """Per model, the logit lens and each lens that gave it a verdict somewhere."""
    return [
        (model, lens)
        for model in results.ran
        for lens in results.lenses()
        if lens == EXACT_LENS
        or any(r.verdict for e in results.claims.values() for r in e.results if r.lens == lens and model in r.models)
    ]


def header(results: Results) -> list[str]:
    """The title, the runs each column comes from, the models not run, the lenses that could not run, the scope:
    tables and short lines, so the raw file reads as well as the rendered one."""
    lines = [
        "# Findings",
        "",
        "Each column holds its model's latest results through that lens, from the run named "
        "here (a run replaces what it ran, claim by prompt set and lens, and keeps the rest):",
        "",
        *(_runs(results) or ["- none yet"]),
        "",
    ]
    never = [m for m in results.model_order if m not in results.ran and m not in results.absent]
    if never:
        lines.append("Not run yet: " + "; ".join(f"{m} (`{findings_command('-m ' + m)}`)" for m in never) + ".  ")
    if results.absent:
        lines += ["Weights not here, so not run (fetch, then run again):", ""]
        lines += [f"- {name}: `{command}`" for name, command in results.absent.items()]
        lines.append("")
    lost = unrun(results)
    for lens, why in lost.items():
        count = sum(hidden(r, lost) for e in results.claims.values() for r in e.results if r.lens == lens)
        reasons = list(dict.fromkeys(why.values()))
        opening = (
            f"Could not run: the {lens_name(lens)} lens on {_and(list(why))} ({count} result{'s' if count != 1 else ''}"
        )
        if len(reasons) == 1:
            lines.append(f"{opening}, not listed under the claims): {reasons[0]}.  ")
        else:
            lines += [f"{opening}, not listed under the claims):", ""]
            lines += [f"- {model}: {reason}" for model, reason in why.items()]
            lines.append("")
    return [*lines, *([""] if lines[-1] else []), *_scope(results)]


def stamp(run: Run) -> str:
    """A run's machine and versions: "Linux x86_64, Python 3.11.7, torch 2.13.0, ..." (every library it records)."""
    return ", ".join([run.machine, f"Python {run.python}", *(f"{k} {v}" for k, v in run.libraries.items())])


def _runs(results: Results) -> list[str]:
    """One line per run that some column's results come from, oldest first: the columns (with how many of their
    results, where the column has results of several runs), the run's date, command and commit; under them, the
    machine and versions once (numbered where the runs differ in them)."""
    lost, lenses = unrun(results), results.lenses()
    made: dict[str, tuple[Run, dict[Column, int]]] = {}
    for entry in results.claims.values():
        for result in entry.results:
            for model in [m for m in result.models if m in results.runs and not hidden(result, lost)]:
                run = replace(result.run or results.runs[model], partial=None)
                counts = made.setdefault(json.dumps(run.to_dict(), sort_keys=True), (run, {}))[1]
                counts[(model, result.lens)] = counts.get((model, result.lens), 0) + 1
    total: Counter[Column] = Counter()
    for _, counts in made.values():
        total.update(counts)
    for model in results.ran:  # a model with per-model checks only
        if not any(m == model for m, _ in total):
            run = replace(results.runs[model], partial=None)
            made.setdefault(json.dumps(run.to_dict(), sort_keys=True), (run, {}))[1][(model, "")] = 0
    ordered = sorted(made.values(), key=lambda made_by: made_by[0].date)
    machines = list(dict.fromkeys(stamp(run) for run, _ in ordered))
    lines = []
    for run, counts in ordered:
        by_model: dict[str, list[str]] = {}
        for (model, lens), n in sorted(
            counts.items(),
            key=lambda item: (results.ran.index(item[0][0]), lenses.index(item[0][1]) if item[0][1] else 0),
        ):
            shown = lens_name(lens) if lens else "checks only"
            if lens and n < total[(model, lens)]:
                shown += f" ({n} of {total[(model, lens)]} results)"
            by_model.setdefault(model, []).append(shown)
        stopped = [
            f"{m} stopped after {p[0]} of its {p[1]} tests"
            for m in by_model
            if (p := results.runs[m].partial) and replace(results.runs[m], partial=None) == run
        ]
        machine = f", machine {machines.index(stamp(run)) + 1}" if len(machines) > 1 else ""
        lines.append(
            "- "
            + "; ".join(f"{model} {_and(shown)}" for model, shown in by_model.items())
            + f": {run.date}, `{run.command}`"
            + "".join(f", {s}" for s in stopped)
            + f"; commit {run.code.text}{machine}."
        )
    if len(machines) == 1:
        lines += ["", f"Machine and versions: {machines[0]}."]
    elif machines:
        lines += ["", *(f"Machine {i}: {machine}.  " for i, machine in enumerate(machines, 1))]
    return lines


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _scope(results: Results) -> list[str]:
    """Which models every verdict is about, their size and quantisation, as a table."""
    rows = []
    for name in results.ran:
        record = results.models.get(name)
        if record is None:
            rows.append([name, "", "", "", ""])
            continue
        size = f"{record.parameters / 1e6:,.0f}M" if record.parameters else ""
        rows.append([name, record.source, size, record.n_layers, f"{record.dtype} on {record.device}"])
    lines = ["**Scope.** Every verdict is about the models it names, and only them" + (":" if rows else ": none.")]
    if rows:
        lines += ["", table(rows, ["model", "weights", "parameters", "blocks", "dtype"]), ""]
    return [
        *lines,
        "The notes' claims concern 7-9B models (Llama 3 8B, Mistral 7B, Gemma 2 9B, Qwen3 8B);",  # one paragraph
        "a verdict here says what holds on these models, not on those.",
        "Claims marked ° (exploratory) test the notes' next steps, not claims they drew.",
    ]


def shown_warnings(results: Results) -> list[DataWarning]:
    """The data warnings of the models with results here (or of none), each once."""
    return list(dict.fromkeys(w for w in results.warnings if w.model in results.runs or w.model is None))


def data_warnings(results: Results) -> list[str]:
    """The data warnings as one table: per model and prompt set, each form's replies at an edge out of its
    replies, and the facts left out; the facts themselves are listed at the end of the report."""
    found = shown_warnings(results)
    if not found:
        return ["## Data warnings", "", "None.", ""]
    forms = list(dict.fromkeys(w.form for w in found if w.kind == EDGE))
    rows: dict[tuple[str | None, str | None], dict[str, str]] = {}
    for w in found:
        row = rows.setdefault((w.model, w.prompt_set), {})
        if w.kind == EDGE:
            row[w.form] = f"{len(w.facts)}/{'?' if w.replies is None else w.replies}"
        else:
            key = "left out" if w.kind == LEFT_OUT else "other"
            row[key] = str(int(row.get(key, "0")) + (len(w.facts) if w.kind == LEFT_OUT else 1))
    more = [key for key in ("left out", "other") if any(key in row for row in rows.values())]
    body = [
        [model or "", prompt_set or "", *(row.get(key, "—") for key in [*forms, *more])]
        for (model, prompt_set), row in rows.items()
    ]
    meanings = list(dict.fromkeys(w.text for w in found if w.kind == EDGE))
    lines = [
        "## Data warnings",
        "",
        "Per model and prompt set, each form's replies at an edge out of the replies read (— none at an edge)"
        + (", the facts left out" if "left out" in more else "")
        + (", and other warnings" if "other" in more else "")
        + '. The facts are listed under "Data warnings in full" at the end.',
        "",
        table(body, ["model", "set", *forms, *more], keep=2),
        "",
    ]
    lines += [f"At an edge: {meaning}.  " for meaning in meanings]
    if any(w.kind == EDGE and w.replies is None for w in found):
        lines.append("?: the run did not record how many replies it read (a run before warnings had fields).  ")
    return [*lines, ""]


def verdicts(results: Results, refs: dict[str, str], notes: Notes) -> list[str]:
    """ "Verdicts": a matrix per prompt set with its family-error line, the verdicts that differ between lenses,
    and the lenses' fidelity on the set; then the legend and the notes cells point to."""
    lost, shown = unrun(results), columns(results)
    lines = ["## Verdicts", "", family_line(results, None), ""]
    for prompt_set in results.prompt_sets():
        entries = [
            e
            for e in results.claims.values()
            if any(r.prompt_set == prompt_set and not hidden(r, lost) for r in e.results)
        ]
        if not entries:
            continue
        here = [
            (m, lens)
            for m, lens in shown
            if lens == EXACT_LENS
            or any(r.lens == lens and r.prompt_set == prompt_set and m in r.models for e in entries for r in e.results)
        ]
        rows = [
            [_claim_label(claim, entry, refs), *(_cell(entry, m, prompt_set, lens, notes) for m, lens in here)]
            for claim, entry in results.claims.items()
            if entry in entries
        ]
        lines += [
            f"Prompt set `{prompt_set}`:",
            "",
            table(
                rows,
                [
                    "claim",
                    *(
                        f"{m}, {lens_name(lens)}" + (" (partial)" if results.runs[m].partial else "")
                        for m, lens in here
                    ),
                ],
                groups=[sum(m == model for m, _ in here) for model in dict.fromkeys(m for m, _ in here)],
            ),
            "",
        ]
        elsewhere = list(dict.fromkeys(lens_name(lens) for m, lens in shown if (m, lens) not in here))
        if elsewhere:
            lines += [
                f"Read through the {_and(elsewhere)} lens{'es' if len(elsewhere) > 1 else ''} on other sets only.",
                "",
            ]
        lines += [family_line(results, prompt_set), ""]
        lines += _lens_dependent(entries, prompt_set, results.ran)
        lines += _fidelity(results, prompt_set)
    lines += [
        "Each cell: the verdict, its figure and n (facts); the interval and the verdict after Holm's adjustment "
        "are under the claim.",
        "",
        "- † the verdict flips under another reasonable threshold (the claim's sensitivity);",
        "- ‡ a caveat applies (under the claim);",
        "- § not decided after Holm's adjustment over every verdict of that model and lens in this report;",
        "- ✗ the test failed (a figure moved beyond its tolerance from the recorded one, the verdict is not the "
        "recorded one, or a claim with none recorded did not hold); a → b: recorded a, now b;",
        "- `too few`: no outcome at that n could have decided; `no data`: n = 0; —: the claim is read through the "
        "logit lens only.",
        "",
        'Under each claim, "could detect" is the smallest true share (of prompts, or of facts beyond the threshold '
        "for a median) its n decides with 80% power.",
        "",
    ]
    lines += [f"[{i}] {reason}  " for i, reason in enumerate(notes.reasons, 1)]
    return lines


def _claim_label(claim: str, entry: ClaimResults, refs: dict[str, str]) -> str:
    """ "1. [Convergence depth][c1]": the number and short name, linked to the claim's section; ° exploratory."""
    exploratory = any(r.verdict and r.verdict.exploratory for r in entry.results)
    return f"{entry.number}. [{short_name(entry)}][{refs[claim]}]" + (" °" if exploratory else "")


def short_name(entry: ClaimResults) -> str:
    """A claim's title up to its colon ("Convergence depth"), at most SHORT characters."""
    name = entry.title.split(":")[0]
    return name if len(name) <= SHORT else name[: SHORT - 1].rstrip() + "…"


def _cell(entry: ClaimResults, model: str, prompt_set: str | None, lens: str, notes: Notes) -> str:
    """A matrix cell in brief: "refuted 0.13 n=38†‡§", "✗ holds → inconclusive [1]", "skipped [3]", "—"."""
    result = entry.result_for(model, prompt_set, lens)
    if result is None:
        return "—" if lens != EXACT_LENS and all(r.lens == EXACT_LENS for r in entry.results) else "not run"
    verdict, recorded = result.verdict, result.recorded
    if verdict is None:
        return f"{'skipped' if result.outcome == Outcome.SKIPPED else 'failed'} {notes.mark(result.message)}"
    failed = "✗ " if result.outcome == Outcome.FAILED else ""
    if recorded and recorded.verdict != verdict.verdict:
        return f"{failed}{recorded.verdict} → {verdict.verdict} {notes.mark(result.message)}"
    marks = ("†" if verdict.sensitive else "") + ("‡" if verdict.caveats else "")
    if verdict.holm not in (None, verdict.verdict):
        marks += "§"
    text = (
        "no data (n=0)" if verdict.verdict == Label.NO_DATA else f"{verdict.verdict} {verdict.value:.2f} n={verdict.n}"
    )
    return failed + text + marks


def _lens_dependent(entries: list[ClaimResults], prompt_set: str | None, models: list[str]) -> list[str]:
    """The claims whose verdict on a model differs between the lenses it was read through, with each lens's KL
    to the output at the claim's deciding depth (where lenses part, neither reading is the model's)."""
    found = []
    for entry in entries:
        for model in models:
            read = [
                r.verdict
                for r in entry.results
                if r.prompt_set == prompt_set and model in r.models and r.verdict is not None
            ]
            if len({v.verdict for v in read}) < 2:
                continue
            readings = []
            for verdict in read:
                kl = next((f.value for f in verdict.beside if f.kind == "kl"), None)
                readings.append(
                    f"{verdict.verdict} ({lens_name(verdict.lens)}" + ("" if kl is None else f", KL {kl:.2f}") + ")"
                )
            found.append(f"{entry.number}. {short_name(entry)} on {model}: {' / '.join(readings)}")
    if not found:
        return []
    return ["Lens-dependent (the verdict differs between lenses):", "", *(f"- {line}" for line in found), ""]


def family_line(results: Results, prompt_set: str | None) -> str:
    """How many of the decided verdicts (holds or refuted) chance alone may have got wrong, each at its own
    confidence and in its own direction, on one prompt set (None: the whole report, every set, lens and model),
    and how many stay decided after Holm's adjustment."""
    decided = [
        v for v in results.verdicts() if (prompt_set is None or v.prompt_set == prompt_set) and v.verdict.decided
    ]
    where = "in this report (every prompt set, lens and model)" if prompt_set is None else "on this set"
    if not decided:
        return f"No verdict decided {where}."
    levels = sorted({v.confidence for v in decided})
    expected, any_wrong = family_error([v.confidence for v in decided])
    kept = sum(v.holm == v.verdict for v in decided)
    return "\n".join(  # one paragraph, a clause a line: the raw file scans as the rendered one reads
        [
            f"{len(decided)} verdicts decided {where}, each at {' or '.join(f'{c:.1%}' for c in levels)}, each "
            "erring in its direction at most half its remainder:",
            f"by chance alone about {expected:.2f} may be wrong (were they independent, the chance that at least "
            f"one is: {any_wrong:.0%}).",
            f"After Holm's adjustment per model and lens, {kept} of the {len(decided)} stay decided, with at most a "
            "5% chance of any wrong in each model and lens.",
        ]
    )


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
            rows.append(
                [
                    figure.model,
                    f"{lens_name(figure.lens)}, {label}",
                    figure.prompts.get(label, ""),
                    *(f"{at[d][label]:.2f}" for d in at),
                    f"{max(kl[i] for i in late):.2f}",
                ]
            )
    bound = next((f.bound for f in found if f.bound is not None), None)
    sources = [f"{f.model}, {lens_name(f.lens)}: {f.source}" for f in found if f.source]
    return [
        f"Lens fidelity on `{prompt_set}`: mean KL(output ‖ lens) in nats on the set's own prompts, where the "
        "lens reads them"
        + (
            f'; a verdict decided where it exceeds {bound:g} is marked "lens not faithful here"'
            if bound is not None
            else ""
        )
        + ".",
        "",
        table(rows, ["model", "lens, form", "prompts", *(f"at {d:.0%}" for d in FIDELITY_DEPTHS), "max from 75%"]),
        "",
        *(["Which lens made each column:", "", *(f"- {source}" for source in sources), ""] if sources else []),
        "\n".join(f"![{f.file}](figures/{f.file})" for f in found),  # one paragraph: side by side, rendered
        "",
    ]
