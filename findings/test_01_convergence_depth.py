"""Convergence depth: the answer settles as the top lens token at 80-85% of depth.

Claim: "All models converge on the correct answer around 80-85% through their layers" (readme of
experiment 001, from one prompt, "What is the capital of Germany?", on four models).

Definition: over the completion and Q&A prompts the model answers (its own greedy continuation starts with
the answer or an alias), follow the first token it writes, and take the relative depth (layer+1)/n_layers of
the first block from which the lens keeps that token top-1 to the last block (a blip on top that is lost
again does not count; the first top-1 is reported beside it). Depth comes in steps of 1/n_layers: each
fact's median depth over its prompts, and the exact (order-statistic) 95% interval of their median, widened
by half a block each side. The claim holds if that interval lies within the notes' 80-85%, itself widened by
half a block each side (a block depth within half a block of the band), is refuted if it lies wholly
outside, and is inconclusive otherwise. Control: the same depth for the token the model writes on the prompts
it answers wrongly with another fact's answer (if wrong answers of the same type settle at the same depth,
the depth is a property of prediction, not of knowing the answer); beside it, whether the control settles
later than the answers (control minus claim, its own interval).
"""

import pytest

from findings.data import CAPITALS
from findings.evidence import RESAMPLING, WRONG_ANSWERS, depth, first_top1_of, followed, scope, settled, thresholds
from lens.lenses.lenses import EXACT
from suite.figures import DepthCurves
from suite.statistics import Verdict
from suite.verdicts import Rule, median_verdict

CLAIM = "convergence_depth"
pytestmark = pytest.mark.claim(CLAIM, number=1)

FORM_LABELS = {"completion": "completion: “The capital of X is”", "qa": "Q&A: “Question: …? Answer:”"}


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on its wrong answers: `followed`)."""
    rows = []
    for prompt, series in followed(findings, prompt_set, control):
        layer = settled(series.rank)
        rows.append(
            prompt.row(
                control,
                token=series.token,
                first_top1_layer=first_top1_of(series.rank),
                settled_layer=layer,
                settled_depth=depth(prompt.trace, layer),
                resolution=1 / prompt.trace.n_layers,
            )
        )
    resolution = 1 / findings.record.n_layers
    margin = t["margin_blocks"] * resolution
    band = (t["band"][0] - margin, t["band"][1] + margin)
    return median_verdict(
        rows,
        key="settled_depth",
        rule=Rule("within", band),
        kind="depth",
        statistic="median depth from which the followed token stays top-1",
        scope=scope(CLAIM, findings, prompt_set, t, control),
        resampling=RESAMPLING,
        resolution=resolution,
    )


def test_convergence_depth(findings, prompt_set, judge_claim, record_figure):
    if prompt_set == CAPITALS:
        record_figure(answer_by_depth(findings))
    judge_claim(evaluate, findings, prompt_set, controls=WRONG_ANSWERS)


def answer_by_depth(findings) -> DepthCurves:
    """Every capital prompt's answer probability and rank over depth, completion and Q&A; through another lens
    than the logit lens, both lenses overlaid (does the answer settle earlier through the tuned lens?)."""
    notes_band = tuple(thresholds(CLAIM, CAPITALS)["notes_band"])
    lenses = {"": findings.lens(CAPITALS)}
    if findings.lens_name != EXACT.name:
        lenses = {" (logit lens)": findings.lens(CAPITALS, EXACT), f" ({findings.lens_name} lens)": lenses[""]}
    series = {f"{FORM_LABELS[f]}{which}": forms[f] for which, forms in lenses.items() for f in FORM_LABELS}
    return DepthCurves(
        model=findings.name,
        name="answer-by-depth" + ("" if len(lenses) == 1 else "-lenses"),
        depth=[lay.depth for lay in next(iter(series.values()))[0].layers],
        p={label: [[lay.p_answer for lay in t.layers] for t in traces] for label, traces in series.items()},
        rank={label: [[lay.rank_answer for lay in t.layers] for t in traces] for label, traces in series.items()},
        band=notes_band,
        band_label=f"notes: converges at {notes_band[0] * 100:g}-{notes_band[1] * 100:g}%",
    )
