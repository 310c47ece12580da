"""Latent English: on German prompts the English answer leads in the middle blocks, the German one only near the output.

Claim: beyond the notes, from the literature (Wendler et al. 2024, "Do Llamas work in English?"): a model asked
in German passes through the English word in its middle layers and turns to the German word only in its last
ones. Labelled as such: the notes do not state it. It needs a faithful lens, so it is read through every lens.

Definition: on each German completion or Q&A prompt (prompt set capitals_german) the model answers in German,
whose English answer (the same fact in findings/facts.csv) starts with another token than the German one the
model writes (Rom/Rome, Wien/Vienna, Moskau/Moscow; Berlin/Berlin tells nothing), follow both first tokens.
The pattern: in the middle third of the blocks the English token's median rank is better than the German one's,
and the block from which the German token outranks the English one to the last block lies in the final third
(past 2/3 of depth). The claim holds if the exact 95% interval of the share of prompts showing it (effective
sample size: the facts) lies above 0.5. Control: another fact's English answer (" Madrid" on the Rom prompts)
in place of the English answer: if any English capital leads the German answer as often, the lead is not the
answer's concept in English.
"""

from statistics import median

import pytest

from findings.evidence import RESAMPLING, answer_series, forward_prompts, partners, phase, scope
from suite.statistics import Verdict
from suite.verdicts import share_verdict

CLAIM = "latent_english"
pytestmark = pytest.mark.claim(CLAIM, number=16)


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, another fact's English answer)."""
    english = {fact.id: fact for fact in findings.facts(t["english_from"])}
    other = partners(tuple(english.values()))
    rows = []
    for prompt in forward_prompts(findings, prompt_set, answered=True):
        if prompt.fact.id not in english:
            continue
        word = f" {(other if control else english)[prompt.fact.id].answer}"
        followed = prompt.reading.followed
        found = next((w for w in prompt.trace.watched if w.text == word), None)
        if found is None or found.token_id == followed.token_id:
            continue  # the English answer starts with the German one's token: nothing to tell apart
        german = answer_series(prompt.trace).rank
        middle = [i for i, lay in enumerate(prompt.trace.layers) if phase(lay.depth) == "middle"]
        takeover = None
        for i in reversed(range(prompt.trace.n_layers)):
            if german[i] >= found.rank[i]:
                break
            takeover = i
        takeover_depth = None if takeover is None else prompt.trace.layers[takeover].depth
        english_leads = median(found.rank[i] for i in middle) < median(german[i] for i in middle)
        rows.append(
            prompt.row(
                english=found.token,
                german=followed.token,
                english_middle_rank=median(found.rank[i] for i in middle),
                german_middle_rank=median(german[i] for i in middle),
                takeover_depth=takeover_depth,
                english_leads=english_leads,
                pattern=english_leads and takeover_depth is not None and takeover_depth > t["takeover_after"],
            )
        )
    return share_verdict(
        rows,
        flag="pattern",
        threshold=t["majority"],
        statistic="share of prompts whose English answer leads in the middle blocks and German "
        "takes over in the final third" + (" (another fact's English answer)" if control else ""),
        scope=scope(CLAIM, findings, prompt_set, t, control),
        resampling=RESAMPLING,
    )


def test_latent_english(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set, controls=("other English answer",))
