"""lens.reads.generate: the model's own greedy continuation, where its answer starts, and what it spells."""

import pytest
import torch
import transformers as hf

from lens.reads.generate import _continuation, continue_greedy
from lens.tokens import spells


@pytest.mark.parametrize(
    "text, words, expected",
    [
        (" Berlin.\n\nThe", ["Berlin"], "Berlin"),
        (" berlin is", ["Berlin"], "Berlin"),  # case does not matter
        (" Berliner Dom", ["Berlin"], None),  # a whole word, not a prefix
        ("\n\nKiev is the", ["Kyiv", "Kiev"], "Kiev"),  # an alias, after a line break
        (" 7.", ["7", "seven"], "7"),
        (" 70", ["7"], None),
        ("\n\nA: Germany", ["Berlin"], None),
        ("", ["Berlin"], None),
    ],
)
def test_what_a_continuation_spells(text, words, expected):
    assert spells(text, words) == expected


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return hf.AutoTokenizer.from_pretrained(tiny_tokenizer)


def test_a_continuation_is_read_after_the_whitespace_it_starts_with(tokenizer):
    newline = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    word = tokenizer("Berlin", add_special_tokens=False)["input_ids"]
    reply = _continuation(tokenizer, "Question: What is the capital of Germany? Answer:", tuple(newline + word))
    assert reply.lead == "\n\n" and list(reply.lead_ids) == newline
    assert reply.first.token_id == word[0] and reply.first.token.strip()  # never the line break
    assert reply.spells(["Berlin"]) == "Berlin"
    ended = _continuation(tokenizer, "x", ())
    assert ended.first is None and ended.text == "" and ended.spells(["Berlin"]) is None


def test_the_greedy_continuation_is_the_argmax_of_the_models_own_logits(tiny_model):
    """Against a hand-written greedy loop over the Hugging Face model's forward pass, one prompt at a time
    (no padding, no cache): the tokens, and by how much each beat the runner-up."""
    prompts = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]
    tokenizer, hf_model = tiny_model.tokenizer, tiny_model.hf_model
    got = continue_greedy(tiny_model, prompts, max_new_tokens=4)
    for prompt, reply in zip(prompts, got):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        written, margins = [], []
        with torch.inference_mode():
            for _ in range(4):
                p = hf_model(ids).logits[0, -1].softmax(-1).sort(descending=True)
                nxt = int(p.indices[0])
                margins.append(float(p.values[0] - p.values[1]))
                if nxt == tokenizer.eos_token_id:
                    break
                written.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert list(reply.ids) == written
        assert reply.margins == pytest.approx(margins, abs=1e-5)


def test_the_margin_is_the_narrowest_choice_among_the_tokens_that_decided_the_first_word(tokenizer):
    """The tiny tokenizer writes "\n", " ", "1", "1", ",", " ", "w", ...: the lead (two tokens) and both digits
    decided the word " 11" (4 tokens); the comma that ended it, and later tokens, did not."""
    ids = tuple(tokenizer("\n 11, which is the sum")["input_ids"])
    assert [tokenizer.decode([i]) for i in ids[:5]] == ["\n", " ", "1", "1", ","]
    margins = tuple(0.9 - 0.01 * j for j in range(len(ids) + 1))
    assert _continuation(tokenizer, "10 + 1 =", ids, margins).margin == margins[3]  # the second digit's
    narrow = tuple(0.05 if j == 1 else 0.9 for j in range(len(ids) + 1))
    assert _continuation(tokenizer, "10 + 1 =", ids, narrow).margin == 0.05  # the lead's
    comma = tuple(0.01 if j == 4 else 0.9 for j in range(len(ids) + 1))
    assert _continuation(tokenizer, "10 + 1 =", ids, comma).margin == 0.9  # "," or ".": the same answer
    assert _continuation(tokenizer, "x", (), (0.2,)).margin == 0.2  # ended at once: the end token's choice


@pytest.mark.parametrize(
    "text, answers, expected",
    [
        ("\n 11, which is", ["11"], 5),  # the lead, "1", "1", then "," ends the word and 11 is spelled
        ("\n 11, which is", ["11, which"], 12),  # an answer of more words: until the character after it (letters)
        ("\n 11, which is", ["7"], 5),  # departed from every answer once the word ended
        ("\n 1", ["11"], None),  # the word not ended yet
        ("\n ", ["11"], None),  # whitespace only
    ],
)
def test_a_continuation_is_decided_once_its_first_word_ended_and_no_answer_is_still_possible(
    tokenizer, text, answers, expected
):
    from lens.reads.generate import decided

    ids = tokenizer(text)["input_ids"]
    assert decided(tokenizer, ids, answers) == expected


def test_stopping_where_a_continuation_is_decided_changes_nothing_before_it(tiny_model):
    """With answers, each row stops where it is decided (others in its batch go on): the tokens and margins
    up to there are those of the continuation generated to the end."""
    from lens.reads.generate import decided

    prompts = ["The capital of Germany is", "Question: What is the capital of France? Answer:", "10 + 1 ="]
    full = continue_greedy(tiny_model, prompts)
    answers = [[reply.text.strip()[:2]] for reply in full]  # a prefix of the reply itself: decided late
    answers[1] = ["zzz"]  # departed from at once
    got = continue_greedy(tiny_model, prompts, answers=answers)
    for whole, short, words in zip(full, got, answers):
        cut = decided(tiny_model.tokenizer, whole.ids, words)
        assert short.ids == whole.ids[:cut] and short.margins == whole.margins[: cut if cut else len(whole.margins)]
        assert short.spells(words) == whole.spells(words) and short.margin == whole.margin
    assert sum(len(short.ids) < len(whole.ids) for short, whole in zip(got, full)) >= 2  # stopped early
