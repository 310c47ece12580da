"""Every answer of every prompt set, on each embedded tokenizer, is followed by a word token: never a
bare space (digit-splitting tokenizers write " 7" as " " + "7") and never punctuation."""

from findings.data import SETS, forms_of
from lens.tokens import answer_token, is_word


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
