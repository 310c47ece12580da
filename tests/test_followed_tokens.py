"""Where the lens reads on the embedded models: after the whitespace the model writes first, at the token
it writes next (checked against its own greedy reply); the chat form at the start of the assistant's reply."""

import pytest

from findings.data import CHAT, NOTES_FACT, SETS
from lens.errors import LensError
from lens.reads.generate import continue_greedy
from lens.reads.trace import collect, read
from lens.tokens import AnswerToken, answer_token, chat_prompt

pytestmark = pytest.mark.slow  # every test here loads an embedded model


def test_the_lens_reads_where_the_model_writes_its_first_word(real_model):
    """The model's greedy reply (generate, with a cache and padding) against the lens's own forward pass read
    after the whitespace the reply starts with: the reply's first word token is the output's top token there
    (up to a near-tie of 1e-4), and never whitespace."""
    facts = SETS["capitals"][:24] + SETS["arithmetic"][:8]
    prompts = [fact.prompt(form) for fact in facts for form in ("completion", "qa")]
    # Greedy tokens do not depend on how many come after them: 4 new tokens hold the lead (at most 2 whitespace
    # tokens on these models) and the first word, the same replies' starts as findings' 8 give, for half the time.
    replies = continue_greedy(real_model, prompts, max_new_tokens=4)
    kept = [(p, r) for p, r in zip(prompts, replies) if r.first is not None]
    assert len(kept) >= len(prompts) // 2
    assert any(r.lead for _, r in kept)  # a space before a digit, or a line break after "Answer:"
    traces = trace_after(real_model, kept)
    for (prompt, reply), one in zip(kept, traces):
        assert reply.first.token.strip() and one.read_after == prompt + reply.lead  # never the whitespace
        assert one.output.p_answer >= one.output.top[0][1] - 1e-4, (prompt, reply, one.output.top[:2])


def trace_after(model, kept):
    residuals = collect(model, [p for p, _ in kept], leads=[r.lead_ids for _, r in kept])
    return read(model, residuals, [r.first for _, r in kept])


SMOLLM2_CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
"""SmolLM2's chat template with its default system turn, written out: the reply's first token comes next."""


@pytest.mark.parametrize(
    "answer, token_id, token, n_tokens",
    [
        # Ids from SmolLM2's vocabulary: with no space before it, "Berlin" is "Ber" + "lin" (" Berlin" is one
        # token, 11452, but a reply does not start with a space); "Paris" is one token.
        ("Berlin", 24726, "Ber", 2),
        ("Paris", 38634, "Paris", 1),
    ],
)
def test_the_chat_form_reads_where_the_assistants_reply_begins(smollm2, answer, token_id, token, n_tokens):
    prompt = chat_prompt(smollm2.tokenizer, NOTES_FACT.qa)
    assert prompt == SMOLLM2_CHAT.format("Question: What is the capital of Germany? Answer:")
    assert answer_token(smollm2.tokenizer, prompt, answer) == AnswerToken(
        text=answer, token_id=token_id, token=token, n_tokens=n_tokens, lead=""
    )


def test_no_answer_in_the_chat_form_starts_with_a_whitespace_token(smollm2):
    # answer_token refuses punctuation itself; a leading whitespace token it would accept and read after.
    for name, facts in SETS.items():
        for fact in facts:
            token = answer_token(smollm2.tokenizer, chat_prompt(smollm2.tokenizer, fact.qa), fact.target(CHAT))
            assert token.lead == "", (name, fact.id, token)


def test_a_tokenizer_without_a_chat_template_is_refused_in_one_line(smollm2, monkeypatch):
    monkeypatch.setattr(smollm2.tokenizer, "chat_template", None)
    with pytest.raises(LensError, match="no chat template"):
        chat_prompt(smollm2.tokenizer, "hi")
