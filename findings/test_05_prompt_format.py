"""Prompt format: the Q&A form gives the answer more probability than the completion form does.

Claim: "Q&A format ('Question: What is the capital of Germany? Answer:') works better than completion
format for many models" (project notes, recent progress).

Definition: the answer's own output probability, as the notes measured it, where the lens reads each form
(after any whitespace or line break the model writes first; the first token it writes where it answers),
after "Question: What is the capital of X? Answer:" and after "The capital of X is". A fact counts if the
model answers it (its own continuation starts with the answer or an alias) in at least one form. The
effect is the log-ratio ln(p_qa / p_completion); the claim holds if the 95% interval of its median over
facts (bootstrap) lies above 0, is refuted if it lies at or below 0. Beside it: the same ratio normalised
over the set's candidate answers (does the frame move every answer alike?) and how often each form is
answered.
"""

import pytest

from findings.evidence import paired_forms

CLAIM = "prompt_format"
pytestmark = pytest.mark.claim(CLAIM, number=5)


def evaluate(findings, prompt_set: str, t):
    """The claim's verdict on one model and prompt set."""
    return paired_forms(findings, prompt_set, t, claim=CLAIM, better="qa", worse="completion")


def test_prompt_format(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set)
