"""Subject before answer: a token naming the subject (" Germany") is top-1 at some layer before the answer first is.

Claim: Qwen3-8B "shows a distinctive 'Germany -> Berlin' transition pattern"; Mistral 7B shows "early
emergence of German-related tokens" (readme of experiment 001). Wendler et al. 2024 measure concept
and token separately for the same reason.

Definition: on each correctly answered completion or Q&A prompt, find the first block whose lens puts
the subject (any spelling that is a whole token there, never a shared prefix) top-1 and the first that
puts the answer top-1. The pattern is present when the subject's comes strictly earlier. The claim holds
if the exact 95% interval of the share of prompts showing it (effective sample size: the facts) lies
above 0.5. Control: another fact's answer in place of the answer (it must not hold).
"""

import pytest

from findings.data import CAPITALS, THRESHOLDS
from findings.evidence import as_control, first_top1, forward_prompts, partners, share_verdict
from suite.figures import TokenGrid
from suite.statistics import Verdict

CLAIM = "subject_before_answer"
pytestmark = pytest.mark.claim(CLAIM, number=12)


def evaluate(findings, prompt_set: str, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on shuffled answers)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt, fact, trace in forward_prompts(findings, prompt_set, answered=True):
        word = other[fact.id].answer if control else fact.answer
        subject, answer = first_top1(trace, fact.subject), first_top1(trace, word)
        rows.append({"fact": fact.id, "prompt": prompt, "followed": word, "subject_first_top1": subject,
                     "answer_first_top1": answer,
                     "subject_first": subject is not None and answer is not None and subject < answer})
    verdict = share_verdict(CLAIM, findings.name, prompt_set, rows, "subject_first",
                            THRESHOLDS[CLAIM]["majority"],
                            "share of prompts where the subject is top-1 before the answer")
    return as_control(verdict) if control else verdict


def test_subject_before_answer(findings, prompt_set, judge, record_control, record_figure):
    if prompt_set == CAPITALS:
        record_figure(notes_prompt_grid(findings))
    record_control(evaluate(findings, prompt_set, control=True))
    judge(evaluate(findings, prompt_set))


def notes_prompt_grid(findings) -> TokenGrid:
    """The logit-lens picture of the notes' own prompt: where " Germany" and " Berlin" show up."""
    grid = findings.grid()
    return TokenGrid(model=findings.name, name="logit-lens", title=f"{findings.name}: logit lens, {grid.prompt!r}",
                     tokens=list(grid.tokens), top1=[list(r) for r in grid.top1], p=[list(r) for r in grid.p])
