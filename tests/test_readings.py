"""findings.model_findings: where the lens reads a prompt and what it follows, from the model's own reply:
answered by its continuation (an alias, a leading line break), the answer followed otherwise, and a first
token that starts two answers flagged, never dropped."""

import pytest
import transformers as hf

from findings.data import Fact
from findings.model_findings import _reading, _with_shared_starts
from lens.reads.generate import _continuation

KYIV = Fact(
    id="ukraine",
    subject="Ukraine",
    answer="Kyiv",
    origin="added",
    completion="The capital of Ukraine is",
    qa="Question: What is the capital of Ukraine? Answer:",
    reverse="Kyiv is the capital of",
    aliases="Kiev",
)

GERMANY = Fact(
    id="germany",
    subject="Germany",
    answer="Berlin",
    origin="notes",
    completion="The capital of Germany is",
    qa="Question: What is the capital of Germany? Answer:",
    reverse="Berlin is the capital of",
)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return hf.AutoTokenizer.from_pretrained(tiny_tokenizer)


def ids(tokenizer, text):
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_an_alias_after_a_line_break_answers_and_is_followed_there(tokenizer):
    reply = _continuation(tokenizer, KYIV.qa, ids(tokenizer, "\nKiev."))
    reading = _reading(tokenizer, KYIV, "qa", KYIV.qa, reply)
    assert reading.answered == "Kiev"
    assert reading.lead_ids == ids(tokenizer, "\n")
    assert reading.followed.token_id == ids(tokenizer, "Kiev")[0]  # the model's own first token, a piece


def test_a_reply_that_gives_another_word_does_not_answer_and_the_answer_is_followed(tokenizer):
    reply = _continuation(tokenizer, GERMANY.completion, ids(tokenizer, " Paris is"))
    reading = _reading(tokenizer, GERMANY, "completion", GERMANY.completion, reply)
    assert reading.answered is None and reading.lead_ids == ()
    assert (
        reading.followed.token_id
        == tokenizer(GERMANY.completion + " Berlin")["input_ids"][len(tokenizer(GERMANY.completion)["input_ids"])]
    )
    assert reading.own.token_id == ids(tokenizer, " Paris")[0]  # what it wrote, kept for the controls


def test_a_first_token_that_starts_two_answers_is_a_caveat(tokenizer):
    twins = [
        Fact(
            id=f"t{i}",
            subject=f"Land{i}",
            answer=answer,
            origin="added",
            qa="",
            reverse="",
            completion=f"The capital of Land{i} is",
        )
        for i, answer in enumerate(["Berlin", "Berlinx", "Paris"])
    ]
    readings = [
        _reading(
            tokenizer,
            fact,
            "completion",
            fact.completion,
            _continuation(tokenizer, fact.completion, ids(tokenizer, f" {fact.answer}.")),
        )
        for fact in twins
    ]
    first = [r.followed.token_id for r in readings]
    flagged = _with_shared_starts(tokenizer, readings)
    assert len(flagged) == 3  # nothing dropped
    assert first[0] == first[1] != first[2]  # " Berlin" starts both Berlin and Berlinx in this tokenizer
    for reading, token in zip(flagged, first):
        shares = [other.fact.answer for other, t in zip(flagged, first) if t == token and other is not reading]
        assert set(reading.shared_with) == set(shares)
        assert (reading.caveat is not None) == bool(shares)
