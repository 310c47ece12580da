"""The one reduction of the lens (lens.reads.reduce), here and inside a remote job: what it keeps equals the definitions
computed from the whole vocabulary in float64, it stays float32 under the bfloat16 autocast NDIF runs jobs in,
and what a remote job sends back for a prompt of an 80-block model (Llama 3.1 70B's depth) is at most 32 KB."""

from __future__ import annotations

import pytest
import torch

from lens.reads.reduce import COMPARE_UP_TO, ROWS_AT_ONCE, _ranks_on_device, ranks_of, reduce

TEMPERATURES = (0.5, 1.0, 2.0)


@pytest.fixture
def chunk():
    """Lens logits of 3 prompts x 4 blocks over 1,000 tokens, the output, and per prompt the ids followed (the
    second row shorter, padded by repeating its first id) and more output ids."""
    torch.manual_seed(0)
    logits, output = torch.randn(3, 4, 1000) * 4, torch.randn(3, 1000) * 4
    logits[0, 1, 17] = logits[0, 1, 3]  # a tie: neither counts as above the other
    ids = torch.tensor([[3, 17, 999], [5, 400, 5], [0, 1, 2]])
    return logits, output, ids, torch.tensor([[8, 9], [10, 11], [12, 13]])


@pytest.mark.parametrize("rows", [1, 3, 4])  # a row at a time (the CPU), a prompt's blocks unevenly, all at once
def test_the_reduction_keeps_the_definitions_computed_over_the_whole_vocabulary(chunk, rows, monkeypatch):
    monkeypatch.setitem(ROWS_AT_ONCE, "cpu", rows)
    logits, output, ids, extra = chunk
    got = reduce(logits, output, ids, 4, TEMPERATURES, extra)
    z, out = logits.double(), output.double()
    for k, t in enumerate(TEMPERATURES):
        logp, logq = torch.log_softmax(z / t, -1), torch.log_softmax(out / t, -1)
        p, q = logp.exp(), logq.exp()
        lse, out_lse = got["lse"][..., k, None].double(), got["out_lse"][:, k, None].double()
        followed = torch.stack([logp[j][:, ids[j]] for j in range(3)])
        assert torch.allclose(got["ids_logits"].double() / t - lse, followed, atol=1e-5)
        assert torch.allclose(got["top_logits"].double() / t - lse, logp.topk(4, -1).values, atol=1e-5)
        assert torch.allclose(got["out_extra_logits"].double() / t - out_lse, logq.gather(-1, extra), atol=1e-5)
        assert torch.allclose(got["entropy"][..., k].double(), -(p * logp).sum(-1), atol=1e-4)
        assert torch.allclose(got["out_entropy"][:, k].double(), -(q * logq).sum(-1), atol=1e-4)
        kl = (q[:, None] * (logq[:, None] - logp)).sum(-1)
        assert torch.allclose(got["kl"][..., k].double(), kl, atol=1e-4)
    ranks = torch.stack([(z[j][:, None, :] > z[j][:, ids[j], None]).sum(-1) + 1 for j in range(3)])
    assert torch.equal(got["ids_ranks"].long(), ranks)
    assert got["ids_ranks"][1, :, 0].tolist() == got["ids_ranks"][1, :, 2].tolist()  # the padding repeats a rank
    assert torch.equal(got["top_ids"].long(), logits.topk(4, -1).indices)
    assert torch.equal(got["out_ids_ranks"].long(), (out[:, None, :] > out.gather(-1, ids)[..., None]).sum(-1) + 1)
    assert torch.allclose(got["final_diff"], (logits[:, -1] - output).abs().amax(-1))


@pytest.mark.parametrize("k", [1, COMPARE_UP_TO, COMPARE_UP_TO + 1, 40])  # compared one by one, or searchsorted
@pytest.mark.parametrize("rank", [ranks_of, _ranks_on_device])  # on the CPU by numpy; elsewhere by torch
def test_ranks_count_the_logits_above_each_value_either_way(k, rank):
    torch.manual_seed(1)
    logits = torch.randn(7, 500).round(decimals=1)  # many ties
    values = logits[:, torch.randint(0, 500, (k,))]
    expected = (logits[:, None, :] > values[:, :, None]).sum(-1) + 1
    assert torch.equal(rank(logits, values), expected)


def test_the_entropy_of_a_lens_thousands_of_nats_wide_is_its_definition():
    """The raw lens's logits (no final norm) spread over thousands of nats: the entropy stays p log p summed,
    though probabilities below exp(-80) are floored for speed."""
    torch.manual_seed(2)
    logits, output = torch.randn(2, 3, 2000) * 400, torch.randn(2, 2000) * 4
    got = reduce(logits, output, torch.zeros(2, 1, dtype=torch.long), 1, (1.0,))
    logp = torch.log_softmax(logits.double(), -1)
    assert torch.allclose(got["entropy"][..., 0].double(), -(logp.exp() * logp).sum(-1), atol=1e-6)
    logq = torch.log_softmax(output.double(), -1)
    kl = (logq.exp()[:, None] * (logq[:, None] - logp)).sum(-1)
    assert torch.allclose(got["kl"][..., 0].double(), kl, rtol=1e-5)


def test_the_reduction_stays_float32_under_the_bfloat16_autocast_ndif_runs_jobs_in(chunk):
    logits, output, ids, extra = chunk
    plain = reduce(logits, output, ids, 4, TEMPERATURES, extra)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = reduce(logits, output, ids, 4, TEMPERATURES, extra)
    for key, value in plain.items():
        assert autocast[key].dtype == value.dtype and torch.equal(autocast[key], value), key


def test_a_prompt_of_an_80_block_model_comes_back_in_at_most_32_kb(tiny_tokenizer):
    """A full job of 16 prompts through the remote path (nnsight's simulation of the request), asking for what the
    findings ask: per prompt 17 tokens followed through the exact lens (the answer's, subject's and another
    subject's spellings, the model's own token), the answer through the raw lens, the top 5, and the output
    probability of 65 candidate answers. What comes back depends on the depth, not the width or the vocabulary,
    so an 80-block model of width 64 sends what Llama 3.1 70B does."""
    import transformers as hf

    from lens.models.loader import wrap
    from lens.models.registry import LocalFolder
    from lens.reads.records import Wanted
    from lens.reads.trace import collect
    from lens.remote import jobs, simulated
    from lens.tokens import AnswerToken
    from tests.conftest import SIZES

    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = hf.LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1, pad_token_id=2, **{**SIZES, "num_hidden_layers": 80}
    )
    deep = wrap(
        LocalFolder(name="deep", path=tiny_tokenizer),
        hf.AutoModelForCausalLM.from_config(config),
        tokenizer,
        device="cpu",
        weights_id="random",
    )
    prompts = [f"The capital of Germany is{' the' * i}" for i in range(16)]

    def token(i: int) -> AnswerToken:
        return AnswerToken(text=str(i), token_id=i, token=str(i), n_tokens=1)

    answers = [token(300 + i) for i in range(16)]
    watch = [[token(10 * i + k) for k in range(16)] for i in range(16)]  # with the answer: 17
    wanted = Wanted(answers=answers, lenses={"exact": watch, "raw": None}, output_ids=[list(range(100, 165))] * 16)
    remote = simulated(deep)
    collect(remote, prompts, leads=[[]] * 16, backend="nnsight", wanted=wanted)
    (kept,) = jobs.jobs_dir(remote.identity).glob("lens-*.pt")
    result = jobs._load(kept)
    assert result["exact"]["ids_ranks"].shape == (16, 80, 17)
    per_prompt = jobs.result_bytes(result) / 16  # as NDIF stores and sends it: torch.save of the saved values
    print(f"bytes per prompt: {per_prompt:.0f}")
    assert per_prompt <= 32 * 1024, per_prompt
