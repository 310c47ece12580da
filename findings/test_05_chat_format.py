"""Chat format: an instruct model's own chat template gives the answer more probability than the completion form does.

Claim: the notes' "Q&A format works better than completion format for many models" (project notes, recent
progress), asked of an instruct model (SmolLM2-Instruct, Qwen3) the way it was trained to be asked: the
notes' Q&A prompt as the user's turn of the model's chat template, the answer read where the assistant's
reply begins.

Definition: as for the prompt format (claim 5): per fact the answer's output probability normalised over
the set's candidate answers, in the chat form and in the completion form; a fact counts if the candidates
get at least 5% of the output probability in one form at least; the effect is the median of
ln(p_chat / p_completion) over facts, holding if its 95% interval (bootstrap over facts) lies above 0.
A base model (models.toml without `chat = true`) has no chat form: skipped.
"""

import pytest

from findings.data import CHAT, THRESHOLDS
from findings.evidence import paired_forms_verdict

CLAIM = "chat_format"
pytestmark = pytest.mark.claim(CLAIM, number=5)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str):
    """The claim's verdict on one model and prompt set."""
    return paired_forms_verdict(CLAIM, findings, prompt_set, better=CHAT, worse="completion", floor=T["floor"],
                                statistic="median ln(p_chat / p_completion), normalised over candidates")


def test_chat_format(findings, prompt_set, judge):
    if not findings.chat:
        pytest.skip(f"{findings.name} is a base model: no chat template to ask it in (models.toml `chat`)")
    judge(evaluate(findings, prompt_set))
