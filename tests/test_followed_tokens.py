"""Every answer of every prompt set, on each embedded tokenizer, is followed by a word token: never a
bare space (digit-splitting tokenizers write " 7" as " " + "7") and never punctuation."""

import pytest

from findings.data import CHAT, NOTES_FACT, SETS, forms_of
from lens.errors import LensError
from lens.tokens import answer_token, chat_prompt, is_word


def test_no_followed_token_is_whitespace_or_punctuation(real_model):
    followed = {}
    for name, facts in SETS.items():
        for form in forms_of(name):
            for fact in facts:
                token = answer_token(real_model.tokenizer, fact.prompt(form), fact.target(form))
                assert is_word(token.token) and token.token.strip(), (name, form, fact.id, token)
                followed[(name, form, fact.id)] = token
    # The arithmetic answers, at least, do start with a space token on both embedded tokenizers.
    assert {t.lead for (name, _, _), t in followed.items() if name == "arithmetic"} == {" "}


def test_the_chat_form_reads_where_the_assistants_reply_begins(smollm2):
    prompt = chat_prompt(smollm2.tokenizer, NOTES_FACT.qa)
    assert prompt.startswith("<|im_start|>") and NOTES_FACT.qa in prompt
    assert prompt.endswith("<|im_start|>assistant\n")  # the reply's first token comes next
    for name, facts in SETS.items():
        for fact in facts:
            token = answer_token(smollm2.tokenizer, chat_prompt(smollm2.tokenizer, fact.qa), fact.target(CHAT))
            assert is_word(token.token) and token.token.strip() and not token.lead, (name, fact.id, token)


def test_a_tokenizer_without_a_chat_template_is_refused_in_one_line(smollm2, monkeypatch):
    monkeypatch.setattr(smollm2.tokenizer, "chat_template", None)
    with pytest.raises(LensError, match="no chat template"):
        chat_prompt(smollm2.tokenizer, "hi")
