"""Attention from the last position equals transformers' own attention weights."""

import pytest
import torch

from lens.reads.attention import attention_from_last, token_positions

pytestmark = pytest.mark.slow  # every test here loads an embedded model

PROMPT = "The capital of Germany is"


def test_attention_from_last_matches_transformers_output_attentions(real_model, twin_of):
    model = real_model  # a fixture of an embedded model: the test is marked slow (tests/conftest.py)
    ours = attention_from_last(model, PROMPT)
    twin = twin_of(model)
    with torch.inference_mode():
        attentions = twin(**model.tokenizer([PROMPT], return_tensors="pt"), output_attentions=True).attentions
    expected = torch.stack([a[0, :, -1, :].mean(0) for a in attentions])
    assert torch.allclose(torch.tensor(ours.mean), expected, atol=1e-5)
    for layer, head, position, weight in ours.top_heads:
        assert weight == pytest.approx(float(attentions[layer][0, head, -1, position]), abs=1e-5)
        assert position > 0


def test_subject_positions_are_the_subject_tokens(smollm2, gemma3):
    for model in (smollm2, gemma3):
        positions = token_positions(model, PROMPT, "Germany")
        ids = model.tokenizer(PROMPT)["input_ids"]
        assert model.tokenizer.decode([ids[p] for p in positions]).strip() == "Germany"
