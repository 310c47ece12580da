"""Subject before answer: a token naming the subject (" Germany") is top-1 at some layer before the answer first is.

Claim: Qwen3-8B "shows a distinctive 'Germany -> Berlin' transition pattern"; Mistral 7B shows "early
emergence of German-related tokens" (readme of experiment 001). Wendler et al. 2024 measure concept
and token separately for the same reason.

Definition: on each completion or Q&A prompt the model answers, find the first block whose lens puts
the subject (any spelling that is a whole token there, never a shared prefix) top-1 and the first that
puts the followed answer token (the first token the model writes) top-1. The pattern is present when the
subject's comes strictly earlier. The claim holds if the exact 95% interval of the share of prompts
showing it (effective sample size: the facts) lies above 0.5. Two controls, each with the difference claim
minus control tested on its own interval: another fact's subject (" Japan" on the Germany prompts: if any
country surfaces before the answer as often, the pattern is not about this prompt's subject), and a word of
the prompt that is not the subject (" capital", claims.toml `in_context`: if any token in context surfaces
as often, the subject's early top-1 is an echo of the context, not a step toward the answer).
"""

import pytest

from findings.data import CAPITALS
from findings.evidence import (
    answer_series,
    first_top1,
    first_top1_of,
    forms_of_word,
    forward_prompts,
    majority,
    partners,
)
from suite.figures import TokenGrid
from suite.statistics import Verdict

CLAIM = "subject_before_answer"
pytestmark = pytest.mark.claim(CLAIM, number=12)


CONTROLS = {"other subject": "another fact's subject", "in context": "a word of the prompt that is not the subject"}


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, one of `CONTROLS` in the subject's place)."""
    other = partners(findings.facts(prompt_set))
    words = {
        None: lambda fact: fact.subject,
        "other subject": lambda fact: other[fact.id].subject,
        "in context": lambda fact: t["in_context"].get(prompt_set),
    }
    rows = []
    for prompt in forward_prompts(findings, prompt_set, answered=True):
        word = words[control](prompt.fact)
        if word is None or not forms_of_word(prompt.trace, word):
            continue  # no whole token spells it in this model's vocabulary: nothing to follow
        subject, answer = first_top1(prompt.trace, word), first_top1_of(answer_series(prompt.trace).rank)
        rows.append(
            prompt.row(
                subject=word,
                subject_first_top1=subject,
                answer_first_top1=answer,
                subject_first=subject is not None and answer is not None and subject < answer,
            )
        )
    what = f" ({CONTROLS[control]} in its place)" if control else ""
    return majority(
        CLAIM,
        rows,
        "subject_first",
        findings,
        prompt_set,
        t,
        control,
        statistic=f"share of prompts where the subject{what} is top-1 before the answer",
    )


def test_subject_before_answer(findings, prompt_set, judge_claim, record_figure):
    if prompt_set == CAPITALS:
        record_figure(notes_prompt_grid(findings))
    judge_claim(evaluate, findings, prompt_set, controls=tuple(CONTROLS))


def notes_prompt_grid(findings) -> TokenGrid:
    """The logit-lens picture of the notes' own prompt: where " Germany" and " Berlin" show up."""
    grid = findings.grid()
    return TokenGrid(
        model=findings.name,
        name="logit-lens",
        title=f"{findings.name}: logit lens, {grid.prompt!r}",
        tokens=list(grid.tokens),
        top1=[list(r) for r in grid.top1],
        p=[list(r) for r in grid.p],
    )
