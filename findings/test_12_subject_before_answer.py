"""Subject before answer: a token naming the subject (" Germany") is top-1 at some layer before the answer first is.

Claim: Qwen3-8B "shows a distinctive 'Germany -> Berlin' transition pattern"; Mistral 7B shows "early
emergence of German-related tokens" (readme of experiment 001). Wendler et al. 2024 measure concept
and token separately for the same reason.

Definition: on each completion or Q&A prompt the model answers, find the first block whose lens puts
the subject (any spelling that is a whole token there, never a shared prefix) top-1 and the first that
puts the followed answer token (the first token the model writes) top-1. The pattern is present when the
subject's comes strictly earlier. The claim holds if the exact 95% interval of the share of prompts
showing it (effective sample size: the facts) lies above 0.5. Control: another fact's subject (" Japan" on
the Germany prompts) in place of the subject: if any country surfaces before the answer as often, the
pattern is not about this prompt's subject.
"""

import pytest

from findings.data import CAPITALS
from findings.evidence import (
    RESAMPLING,
    answer_series,
    first_top1,
    first_top1_of,
    forward_prompts,
    partners,
    scope,
)
from suite.figures import TokenGrid
from suite.statistics import Verdict
from suite.verdicts import share_verdict

CLAIM = "subject_before_answer"
pytestmark = pytest.mark.claim(CLAIM, number=12)


def evaluate(findings, prompt_set: str, t, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, another fact's subject)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt in forward_prompts(findings, prompt_set, answered=True):
        subject_word = other[prompt.fact.id].subject if control else prompt.fact.subject
        subject, answer = first_top1(prompt.trace, subject_word), first_top1_of(answer_series(prompt.trace).rank)
        rows.append(prompt.row(subject=subject_word, subject_first_top1=subject, answer_first_top1=answer,
                               subject_first=subject is not None and answer is not None and subject < answer))
    return share_verdict(rows, flag="subject_first", threshold=t["majority"],
                         statistic="share of prompts where the subject is top-1 before the answer",
                         scope=scope(CLAIM, findings, prompt_set, t, control), resampling=RESAMPLING)


def test_subject_before_answer(findings, prompt_set, judge_claim, record_figure):
    if prompt_set == CAPITALS:
        record_figure(notes_prompt_grid(findings))
    judge_claim(evaluate, findings, prompt_set, control=True)


def notes_prompt_grid(findings) -> TokenGrid:
    """The logit-lens picture of the notes' own prompt: where " Germany" and " Berlin" show up."""
    grid = findings.grid()
    return TokenGrid(model=findings.name, name="logit-lens", title=f"{findings.name}: logit lens, {grid.prompt!r}",
                     tokens=list(grid.tokens), top1=[list(r) for r in grid.top1], p=[list(r) for r in grid.p])
