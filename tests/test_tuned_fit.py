"""The tuned lens's fit (lens/tuned_fit.py) on a tiny random model: the exact KL it is measured by is the KL of
transformers' own hidden states through the model's own norm and unembedding, the bounded KL of the steps is that
same KL when no token is left in its tail, and the KL steps bring the lens closer to the output on held-out
prompts than the least-squares fit they start from; fitted a few blocks at a time (as an 8B is, for memory), the maps
are those of every block at once."""

from __future__ import annotations

import pytest
import torch

import lens.lenses.train_tuned as train
from lens.lenses import tuned_corpus
from lens.lenses.lenses import TunedLens
from lens.lenses.tuned_fit import (
    Rows,
    bounded_kl,
    groups,
    least_squares,
    refine,
    rows_kl,
    top_tokens,
    translators,
    unembedding,
)
from tests.conftest import random_hf_model, random_model

pytestmark = pytest.mark.slow  # every test here loads an embedded model

PROMPTS = ["The capital of Mexico is", "Question: What is 17 + 25? Answer:", "Die Hauptstadt von Mexiko ist"]


@pytest.fixture(scope="module")
def gemma3(tiny_tokenizer):
    return random_model("gemma3", tiny_tokenizer)


def by_hand(twin, prompts: list[str], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prompt, the mean KL per block between transformers' output and its hidden states read through its own
    final norm and unembedding, prompt by prompt (no padding), with the block outputs the KL is of."""
    kls, resids = [], []
    with torch.no_grad():
        for prompt in prompts:
            out = twin(**tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
            blocks = torch.stack([h[0, -1] for h in out.hidden_states[1:-1]])  # every block's output but the last
            logp = torch.log_softmax(out.logits[0, -1], -1)
            lens = twin.lm_head(twin.model.norm(blocks))
            cap = twin.config.final_logit_softcapping
            logq = torch.log_softmax(torch.tanh(lens / cap) * cap if cap else lens, -1)
            kls.append(torch.cat([(logp.exp() * (logp - logq)).sum(-1), torch.zeros(1)]))
            resids.append(blocks)
    return torch.stack(kls).mean(0), torch.stack(resids)


def test_the_exact_kl_is_transformers_own_read_through_its_norm_and_unembedding(gemma3):
    resid, logits = train._stack(train.prompt_reads(gemma3, PROMPTS[:1]))
    resid, logits = resid[:1], logits[:1]  # the prompt's last token (a whitespace token the model writes: after)
    twin = random_hf_model("gemma3", gemma3.tokenizer)  # the same weights (seed 0), no bridge around them
    expected, blocks = by_hand(twin, PROMPTS[:1], gemma3.tokenizer)
    torch.testing.assert_close(resid[0, :-1], blocks[0], atol=1e-4, rtol=1e-4)
    got = rows_kl(gemma3, lambda r: r, resid, torch.log_softmax(logits, -1))
    torch.testing.assert_close(got.float(), expected, atol=1e-4, rtol=1e-4)


def test_the_bounded_kl_is_the_exact_kl_when_no_token_is_left_in_its_tail(gemma3):
    resid, logits = train._stack(train.prompt_reads(gemma3, PROMPTS))
    vocab = logits.shape[-1]
    ids, logp = top_tokens(logits, k=vocab)
    generator = torch.Generator().manual_seed(0)
    moved = resid[:, :-1] + 0.5 * torch.randn(resid[:, :-1].shape, generator=generator)  # some translation
    weight, bias = unembedding(gemma3)
    with torch.no_grad():
        bounded = bounded_kl(gemma3, moved, ids, logp, weight, bias, generator)
    exact = rows_kl(gemma3, lambda r: torch.cat([moved, r[:, -1:]], 1), resid, torch.log_softmax(logits, -1))
    # bfloat16 products in the bounded form: a few thousandths of a nat
    torch.testing.assert_close(bounded.mean(0), exact[:-1].float(), atol=0.01, rtol=0.01)


def test_the_kl_steps_lower_held_out_kl_against_the_least_squares_start(gemma3):
    prompts = tuned_corpus.prompts()
    resid, logits = train._stack(train.prompt_reads(gemma3, [p.text for p in prompts if not p.held_out]))
    held, held_logits = train._stack(train.prompt_reads(gemma3, [p.text for p in prompts if p.held_out]))
    ids, logp = top_tokens(logits)
    start = least_squares([(resid, None)])
    maps = refine(gemma3, Rows(resid, ids, logp, torch.ones(len(resid))), start, steps=100, lr=3e-4)

    def held_out(maps: torch.Tensor) -> torch.Tensor:
        weight, bias = translators(maps)
        return rows_kl(gemma3, TunedLens(weight=weight, bias=bias).move, held, torch.log_softmax(held_logits, -1))

    before, after = held_out(start.maps), held_out(maps)
    assert (after[:-1] < before[:-1]).all(), (before, after)
    assert after[:-1].mean() < 0.95 * before[:-1].mean()
    assert after[-1] == pytest.approx(0, abs=1e-5)  # the last block is the output, under either


def test_blocks_fitted_a_group_at_a_time_give_the_maps_of_every_block_at_once(gemma3):
    resid, logits = train._stack(train.prompt_reads(gemma3, PROMPTS))
    ids, logp = top_tokens(logits)
    rows = Rows(resid.bfloat16(), ids, logp, torch.rand(len(resid)) + 0.5)  # kept as an 8B's are: its dtype
    n_blocks, d = resid.shape[1] - 1, resid.shape[2]
    at_once = refine(gemma3, rows, least_squares([(rows.resid, rows.weight)]), steps=5, lr=3e-4)
    parts = [range(0, 1), range(1, 3), range(3, n_blocks)]
    by_group = torch.cat(
        [
            refine(gemma3, rows, least_squares([(rows.resid, rows.weight)], blocks=g), steps=5, lr=3e-4, blocks=g)
            for g in parts
        ]
    )
    assert by_group.shape == at_once.shape == (n_blocks, d + 1, d)
    torch.testing.assert_close(by_group, at_once, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(at_once, least_squares([(rows.resid, rows.weight)]).maps)  # the steps moved them
    with pytest.raises(ValueError, match="refining 2 blocks from a start fitted on 1"):
        refine(gemma3, rows, least_squares([(rows.resid, rows.weight)], blocks=range(0, 1)), blocks=range(0, 2))


def test_an_8b_is_fitted_a_block_at_a_time_and_the_embedded_models_at_once():
    assert groups(8194, 31, 4096) == [range(i, i + 1) for i in range(31)]  # 134 MB of float32 rows a block
    assert groups(1760, 29, 576) == [range(0, 29)]  # SmolLM2: 4 MB a block
    assert groups(10, 5, 2**26) == [range(i, i + 1) for i in range(5)]  # at least one block, however wide
