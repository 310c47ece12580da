"""Chat format: an instruct model's own chat template gives the answer more probability than the completion form does.

Claim: the notes' "Q&A format works better than completion format for many models" (project notes, recent
progress), asked of an instruct model (SmolLM2-Instruct, Qwen3) the way it was trained to be asked: the
notes' Q&A prompt as the user's turn of the model's chat template, the answer read where the assistant's
reply begins.

Definition: as for the prompt format (claim 5): per fact the answer's own output probability where the
lens reads each form, in the chat form and in the completion form, over the facts the model answers in at
least one of them; the effect is the median of ln(p_chat / p_completion) over facts, holding if its 95%
interval (bootstrap over facts) lies above 0. A reply that starts "The capital of ..." does not answer.
A base model (models.toml without `chat = true`) has no chat form: skipped.
"""

import pytest

from findings.data import CHAT
from findings.evidence import paired_forms

CLAIM = "chat_format"
pytestmark = pytest.mark.claim(CLAIM, number=5)


def evaluate(findings, prompt_set: str, t):
    """The claim's verdict on one model and prompt set."""
    return paired_forms(findings, prompt_set, t, claim=CLAIM, better=CHAT, worse="completion")


def test_chat_format(findings, prompt_set, judge_claim):
    if not findings.chat:
        pytest.skip(f"{findings.name} is a base model: no chat template to ask it in (models.toml `chat`)")
    judge_claim(evaluate, findings, prompt_set)
