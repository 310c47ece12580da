"""Subject before answer: a token naming the subject (" Germany") is top-1 at some layer before the answer first is.

Claim: Qwen3-8B "shows a distinctive 'Germany -> Berlin' transition pattern"; Mistral 7B shows "early
emergence of German-related tokens" (readme of experiment 001). Wendler et al. 2024 measure concept
and token separately for the same reason.

Definition: on each correctly answered completion or Q&A prompt, find the first block whose lens puts
the subject (any spelling) top-1 and the first that puts the answer top-1. The pattern is present when
the subject's comes strictly earlier. The claim holds if the 95% bootstrap interval of the share of
prompts showing it lies above 0.5.
"""

import pytest

from findings.data import CAPITALS, THRESHOLDS
from findings.evidence import first_top1, forward_prompts, share_verdict
from suite.figures import TokenGrid

pytestmark = pytest.mark.claim("subject_before_answer", number=12)


def test_subject_before_answer(findings, prompt_set, judge, claim, record_figure):
    if prompt_set == CAPITALS:
        record_figure(notes_prompt_grid(findings))
    rows = []
    for prompt, fact, trace in forward_prompts(findings.lens(prompt_set), prompt_set, answered=True):
        subject, answer = first_top1(trace, fact.subject), first_top1(trace, fact.answer)
        rows.append({"prompt": prompt, "subject_first_top1": subject,
                     "answer_first_top1": answer,
                     "subject_first": subject is not None and subject < answer})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "subject_first",
                        THRESHOLDS["subject_before_answer"]["majority"],
                        "share of prompts where the subject is top-1 before the answer"))


def notes_prompt_grid(findings) -> TokenGrid:
    """The logit-lens picture of the notes' own prompt: where " Germany" and " Berlin" show up."""
    grid = findings.grid()
    return TokenGrid(model=findings.name, name="logit-lens", title=f"{findings.name}: logit lens, {grid.prompt!r}",
                     tokens=list(grid.tokens), top1=[list(r) for r in grid.top1], p=[list(r) for r in grid.p])
