"""suite.screen: the report's first screen fits 160 columns whatever the models and lenses, names the run behind
each column, tabulates the data warnings against the facts it summarises, and names a lens that could not run
once instead of row by row."""

import re
from dataclasses import replace

from suite.figures import KLByDepth
from suite.markdown import WIDTH
from suite.report import REPORT, render, rerender, write_report
from suite.results import EDGE, LEFT_OUT, ClaimFigure, DataWarning, Expected, Result
from suite.statistics import Label, Sensitivity
from tests.suite.built import result, results, run

LENSES = ("exact", "tuned", "jacobian")


def through(lens, label="holds", models=("smollm2",), prompt_set="capitals", message=None, **verdict) -> Result:
    """A result read through `lens`: a verdict labelled `label`, or (None) a skip saying `message`."""
    found = result(models, prompt_set, label=label)
    if label is None:
        return replace(found, lens=lens, message=message)
    return replace(found, lens=lens, verdict=replace(found.verdict, lens=lens, **verdict))


def first_screen(text: str) -> str:
    """Everything before the first claim section."""
    return text.split("## Claims")[0]


def tables(text: str) -> list[list[list[str]]]:
    """Each pipe table in `text`: its rows (the header first, the rule dropped) as lists of stripped cells."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                found.append(current)
            if not line.startswith("|:"):
                current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        else:
            current = None
    return found


def test_the_first_screen_fits_160_columns_with_six_models_three_lenses_and_long_claims(tmp_path):
    """Rendered from a findings.json: a matrix too wide for one table is split by columns (each part repeats the
    claim), every column appears once, and no table line before the first claim section is wider than 160."""
    models = ("smollm2", "gemma3", "llama3", "mistral", "gemma2", "qwen3")
    long = [
        through(
            lens,
            label,
            (m,),
            s,
            caveats=("c",),
            sensitivity=(Sensitivity("t", 1, Label.HOLDS, 0.5),),
            holm="inconclusive",
        )
        for m in models
        for lens in LENSES
        for s in ("capitals", "history")
        for label in ["inconclusive" if lens == "tuned" else "refuted"]
    ]
    done = results(
        "2026-11-30 10:00 UTC",
        {
            "cross_architecture_consistency": long,
            "recall": [result((m,), s, label="holds") for m in models for s in ("capitals", "history")],
        },
    )
    done = replace(
        done,
        claims={
            claim: replace(
                entry,
                title=f"{claim.replace('_', ' ').title()} of every "
                "architecture: a title far too long for any matrix column",
            )
            for claim, entry in done.claims.items()
        },
        runs={
            m: replace(
                r,
                command="pytest findings/ -p no:cacheprovider -m 'smollm2 or gemma3 or "
                "llama3 or mistral or gemma2 or qwen3' -k 'tuned or jacobian or exact'",
            )
            for m, r in done.runs.items()
        },
    )
    write_report(done, tmp_path)
    (tmp_path / REPORT).unlink()
    text = rerender(tmp_path).read_text()  # as `./run report` renders it, from findings.json alone
    screen = first_screen(text)
    wide = [line for line in screen.splitlines() if line.startswith("|") and len(line) > WIDTH]
    assert not wide, f"{len(wide)} table lines wider than {WIDTH}, e.g. {wide[0]}"
    matrices = [t for t in tables(screen) if t[0][0] == "claim"]
    assert len(matrices) > 2  # two sets, each too wide for one table
    headers = [h for t in matrices for h in t[0][1:]]
    expected = [f"{m}, {name}" for m in models for name in ("logit", "tuned", "Jacobian")]
    assert sorted(headers) == sorted(expected * 2)  # every column once per set
    owners = [{h.split(",")[0] for h in t[0][1:]} for t in matrices]
    assert sum(len(models) for models in owners) == 2 * len(models)  # a model's lenses side by side, in one part
    assert all(row[0].startswith(("0. [Cross", "1. [Recall")) for t in matrices for row in t[1:])
    assert "of every architecture: a title far too long" not in screen  # the full title is under the claim
    assert "### 0. Cross Architecture Consistency of every architecture: a title far too long" in text


def test_cells_name_the_verdict_in_brief_and_the_lens_by_its_name():
    done = results(
        "2026-11-30 10:00 UTC",
        {
            "depth": [
                through("exact"),
                through("tuned", "refuted"),
                through("exact", "holds", ("gemma3",)),
                through("tuned", "holds", ("gemma3",)),
            ],
            "recall": [result(["smollm2"]), result(["gemma3"], label="refuted")],
        },
    )
    screen = first_screen(render(done.with_holm(), {}))
    header, depth, recall = tables(screen.split("## Verdicts")[1])[0]
    assert header == ["claim", "smollm2, logit", "smollm2, tuned", "gemma3, logit", "gemma3, tuned"]
    assert depth == ["0. [Depth][c1]", "holds 0.80 n=7", "refuted 0.80 n=7", "holds 0.80 n=7", "holds 0.80 n=7"]
    assert recall == ["1. [Recall][c2]", "holds 0.80 n=7", "—", "refuted 0.80 n=7", "—"]  # logit lens only
    assert (
        "Lens-dependent (the verdict differs between lenses):\n\n- 0. Depth on smollm2: holds (logit) / refuted "
        "(tuned)\n" in screen
    )
    assert "exact" not in screen and "[c1]: #0-depth" in render(done, {})


def test_a_cell_marks_a_failure_a_regression_and_a_verdict_holm_undecides():
    failed = replace(through("exact", "holds", holm="inconclusive"), outcome="failed")
    moved = replace(
        through("exact", "refuted", ("gemma3",)),
        outcome="failed",
        message="the figure moved",
        recorded=Expected(Label.HOLDS, "share = 0.8"),
    )
    screen = first_screen(render(results("2026-11-30 10:00 UTC", {"a": [failed, moved]}), {}))
    row = tables(screen.split("## Verdicts")[1])[0][1]
    assert row[1:] == ["✗ holds 0.80 n=7§", "✗ holds → refuted [1]"]
    assert "[1] the figure moved" in screen


def test_the_header_names_each_columns_own_run_command_date_and_versions():
    """The logit columns from Monday's full run, smollm2's tuned column from Tuesday's `-k tuned` (its logit
    column untouched), one logit result of smollm2 redone on Wednesday: each line names its columns."""
    monday, tuesday, wednesday = (
        replace(run(day), command=command, libraries={"torch": torch})
        for day, command, torch in (
            ("mon", "pytest findings/", "2.13"),
            ("tue", "pytest findings/ -k tuned", "2.14"),
            ("wed", "pytest findings/ -k recall", "2.14"),
        )
    )
    done = results(
        "wed",
        {
            "depth": [
                replace(through("exact"), run=monday),
                replace(through("tuned"), run=tuesday),
                replace(through("exact", models=("gemma3",)), run=monday),
            ],
            "recall": [replace(result(["smollm2"]), run=wednesday), replace(result(["gemma3"]), run=monday)],
        },
    )
    done = replace(done, runs={"smollm2": replace(wednesday, partial=(1, 2)), "gemma3": monday})
    screen = first_screen(render(done, {}))
    head = screen.split("## Data warnings")[0].splitlines()
    runs = [line for line in head if line.startswith("- ")]
    assert runs == [
        "- smollm2 logit (1 of 2 results); gemma3 logit: mon, `pytest findings/`; commit unknown, machine 1.",
        "- smollm2 tuned: tue, `pytest findings/ -k tuned`; commit unknown, machine 2.",
        "- smollm2 logit (1 of 2 results): wed, `pytest findings/ -k recall`, smollm2 stopped after 1 of its 2 "
        "tests; commit unknown, machine 2.",
    ]
    assert [line for line in head if line.startswith("Machine")] == [
        "Machine 1: Linux x86_64, Python 3.11.7, torch 2.13.  ",
        "Machine 2: Linux x86_64, Python 3.11.7, torch 2.14.  ",
    ]  # each machine and its versions once, under the runs
    assert "smollm2, logit (partial)" in screen
    older = replace(
        done,
        claims={c: replace(e, results=tuple(replace(r, run=None) for r in e.results)) for c, e in done.claims.items()},
    )  # a findings.json from before results had runs
    head = render(older, {}).split("## Data warnings")[0]
    assert [line for line in head.splitlines() if line.startswith("- ")] == [
        "- gemma3 logit: mon, `pytest findings/`; commit unknown, machine 1.",
        "- smollm2 logit and tuned: wed, `pytest findings/ -k recall`, smollm2 stopped after 1 of its 2 tests; "
        "commit unknown, machine 2.",
    ]
    alike = replace(older, runs={m: replace(r, libraries={"torch": "2.13"}) for m, r in older.runs.items()})
    alike = replace(
        alike,
        claims={c: replace(e, results=tuple(replace(r, run=None) for r in e.results)) for c, e in alike.claims.items()},
    )
    one = render(alike, {}).split("## Data warnings")[0].splitlines()
    assert "Machine and versions: Linux x86_64, Python 3.11.7, torch 2.13." in one
    assert not any(line.startswith("- ") and "machine" in line for line in one)  # one machine: not numbered


def test_the_data_warnings_table_counts_what_the_full_lists_at_the_end_list():
    """Each cell: the facts at an edge of one model, set and form out of the replies read; left out: the facts
    left out. Checked against the lists at the end of the report, which the first screen does not repeat."""
    why = "replies won by less than 0.1 of probability over the runner-up"
    warnings = (
        DataWarning("smollm2", "capitals", why, EDGE, "completion", ("de (0.01)", "fr (0.02)", "it (0.05)"), 65),
        DataWarning("smollm2", "capitals", why, EDGE, "qa", ("de (0.03)",), 64),
        DataWarning("gemma3", "history", why, EDGE, "completion", ("moon (0.09)", "ford (0.00)"), None),
        DataWarning("gemma3", "history", "no single-token answer", LEFT_OUT, facts=("obama",)),
        DataWarning("gemma3", "history", "the tokenizer splits it", LEFT_OUT, facts=("mandela",)),
        DataWarning("gemma3", "history", "an odd note"),
    )
    done = replace(
        results("2026-11-30 10:00 UTC", {"a": [result(["smollm2"]), result(["gemma3"], "history")]}), warnings=warnings
    )
    text = render(done, {})
    screen, tail = first_screen(text), text.split("## Data warnings in full")[1]
    (table,) = tables(screen.split("## Data warnings")[1].split("## Verdicts")[0])
    assert table[0] == ["model", "set", "completion", "qa", "left out", "other"]
    listed = {
        tuple(m.groups()[:3]): m.group(4).split(", ") for m in re.finditer(r"^- (\w+), (\w+), (\w+): (.*)$", tail, re.M)
    }
    left = re.findall(r"^- gemma3, history: (\w+) \(", tail, re.M)
    replies = {(w.model, w.prompt_set, w.form): w.replies for w in warnings if w.kind == EDGE}
    for model, prompt_set, *cells in table[1:]:
        for form, cell in zip(("completion", "qa"), cells):
            facts = listed.get((model, prompt_set, form))
            n = replies.get((model, prompt_set, form))
            assert cell == ("—" if facts is None else f"{len(facts)}/{'?' if n is None else n}")
    assert table[1:] == [
        ["smollm2", "capitals", "3/65", "1/64", "—", "—"],
        ["gemma3", "history", "2/?", "—", str(len(left)), "1"],
    ]
    assert left == ["obama", "mandela"] and "- gemma3, history: an odd note" in tail
    assert f"At an edge: {why}." in screen and screen.count(why) == 1
    assert "de (0.01)" not in screen and "obama" not in screen  # the facts only at the end
    assert "?: the run did not record how many replies it read" in screen


def test_a_lens_that_could_not_run_is_named_once_with_its_models_and_why():
    """The Jacobian lens on neither model, the tuned lens on gemma3 only: one line each, their results in no
    matrix and no claim table; smollm2's tuned results stay."""
    nowhere = "TransformerLens publishes no Jacobian lens for {}"
    jacobian = [
        through("jacobian", None, (m,), s, message=nowhere.format(m))
        for m in ("smollm2", "gemma3")
        for s in ("capitals", "history")
    ]
    done = results(
        "2026-11-30 10:00 UTC",
        {
            "depth": [through("exact", models=(m,)) for m in ("smollm2", "gemma3")]
            + [through("tuned"), through("tuned", None, ("gemma3",), message="no tuned lens for gemma3"), *jacobian],
            "across": [
                through("exact", models=("smollm2", "gemma3")),
                through("jacobian", None, ("smollm2", "gemma3"), message="needs two models"),
            ],
        },
    )
    text = render(done, {})
    screen = first_screen(text)
    unrun = [line for line in screen.splitlines() if line.startswith("Could not run")]
    hidden = sum(r.lens == "jacobian" for e in done.claims.values() for r in e.results)
    assert unrun == [
        "Could not run: the tuned lens on gemma3 (1 result, not listed under the claims): no tuned lens for gemma3.  ",
        f"Could not run: the Jacobian lens on smollm2 and gemma3 ({hidden} results, not listed under the claims):",
    ]
    why = screen.split(unrun[1])[1].split("\n\n")[1].splitlines()
    assert why == [f"- smollm2: {nowhere.format('smollm2')}", f"- gemma3: {nowhere.format('gemma3')}"]  # a line each
    assert text.count(nowhere.format("smollm2")) == 1 and "needs two models" not in text
    assert "Jacobian" not in "\n".join(line for line in screen.splitlines() if line not in unrun + why)  # no column
    assert [h for t in tables(screen.split("## Verdicts")[1]) for h in t[0]][:4] == [
        "claim",
        "smollm2, logit",
        "smollm2, tuned",
        "gemma3, logit",
    ]
    claims = text.split("## Claims")[1].split("## Models")[0]
    labels = [t[i][0] for t in tables(claims) for i in range(1, len(t))]
    assert labels == [
        "smollm2 (capitals, logit)",
        "gemma3 (capitals, logit)",
        "smollm2 (capitals, tuned)",
        "smollm2+gemma3 (capitals)",
    ]


def test_each_sets_fidelity_table_names_the_lens_its_kl_and_where_it_came_from():
    figure = KLByDepth(
        model="smollm2",
        name="fidelity-capitals-tuned",
        prompt_set="capitals",
        lens="tuned lens",
        depth=[0.25, 0.5, 0.75, 1.0],
        kl={"completion": [9.0, 4.0, 2.0, 0.0]},
        prompts={"completion": 38},
        bound=1.5,
        source="trained here: recipe-x, 100 tokens",
    )
    done = replace(results("2026-11-30 10:00 UTC", {"a": [result()]}), figures=(ClaimFigure(None, figure),))
    text = render(done, {})
    row = next(line for line in text.splitlines() if "tuned, completion" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == [
        "smollm2",
        "tuned, completion",
        "38",
        "9.00",
        "4.00",
        "2.00",
        "0.00",
        "2.00",
    ]
    assert "smollm2, tuned: trained here: recipe-x, 100 tokens" in text
    assert 'exceeds 1.5 is marked "lens not faithful here"' in text
