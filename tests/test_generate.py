"""lens.generate: the model's own greedy continuation, where its answer starts, and what it spells."""

import pytest
import torch
import transformers as hf

from lens.generate import _continuation, continue_greedy
from lens.tokens import spells


@pytest.mark.parametrize("text, words, expected", [
    (" Berlin.\n\nThe", ["Berlin"], "Berlin"),
    (" berlin is", ["Berlin"], "Berlin"),            # case does not matter
    (" Berliner Dom", ["Berlin"], None),             # a whole word, not a prefix
    ("\n\nKiev is the", ["Kyiv", "Kiev"], "Kiev"),   # an alias, after a line break
    (" 7.", ["7", "seven"], "7"),
    (" 70", ["7"], None),
    ("\n\nA: Germany", ["Berlin"], None),
    ("", ["Berlin"], None),
])
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
    (no padding, no cache)."""
    prompts = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]
    tokenizer, hf_model = tiny_model.tokenizer, tiny_model.hf_model
    got = continue_greedy(tiny_model, prompts, max_new_tokens=4)
    for prompt, reply in zip(prompts, got):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        written = []
        with torch.inference_mode():
            for _ in range(4):
                nxt = int(hf_model(ids).logits[0, -1].argmax())
                if nxt == tokenizer.eos_token_id:
                    break
                written.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert list(reply.ids) == written
