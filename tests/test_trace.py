"""The lens is exact: the last block reproduces the model's output, and every layer matches an
independent computation with plain transformers hooks, on every architecture the notes name."""

import pytest
import torch

from lens.errors import LensError
from lens.lenses.lenses import EXACT, RAW
from lens.reads.trace import collect, read, read_at, trace
from lens.tokens import answer_token, encode
from tests.conftest import random_model
from tests.reference import reference_lens

PROMPTS = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny_pair(tiny_model, tiny_tokenizer):
    arch = tiny_model.name.removeprefix("tiny-")
    twin = random_model(arch, tiny_tokenizer).hf_model  # same seed, separately built
    return tiny_model, twin


@pytest.fixture(scope="module")
def real_pair(real_model, twin_of):
    return real_model, twin_of(real_model)


def test_every_layer_matches_plain_transformers_hooks_on_random_models(tiny_pair):
    assert_exact(*tiny_pair)


@pytest.mark.slow
def test_every_layer_matches_plain_transformers_hooks_on_embedded_models(real_pair):
    assert_exact(*real_pair)


def assert_exact(model, twin):
    residuals = collect(model, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        expected_layers, expected_output = reference_lens(twin, model.tokenizer, prompt)
        ours = EXACT.logits(model, residuals.resid[i]).float()
        assert (ours - expected_layers).abs().max() <= TOLERANCE
        assert (ours[-1] - expected_output).abs().max() <= TOLERANCE
        assert (residuals.output_logits[i].float() - expected_output).abs().max() <= TOLERANCE


def test_softcap_is_what_makes_gemma2_exact(tiny_tokenizer):
    model = random_model("gemma2", tiny_tokenizer)
    assert model.softcap == 2.0
    residuals = collect(model, PROMPTS[:1])
    uncapped = model.bridge.unembed(model.bridge.ln_final(residuals.resid[0, -1]))
    assert (uncapped - residuals.output_logits[0]).abs().max() > 100 * TOLERANCE
    assert (EXACT.logits(model, residuals.resid[0, -1]) - residuals.output_logits[0]).abs().max() <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_trace_statistics_match_a_hand_computation(real_pair, temperature):
    model, twin = real_pair
    prompt, answer = PROMPTS[0], " Berlin"
    (result,) = trace(model, [prompt], [answer], top_k=3, temperature=temperature)
    layers, output = reference_lens(twin, model.tokenizer, prompt)
    answer_id = model.tokenizer(prompt + answer)["input_ids"][len(model.tokenizer(prompt)["input_ids"])]
    # float64 definitions, written out: softmax, entropy, KL(output || layer).
    log_p = torch.log_softmax(layers.double() / temperature, -1)
    log_q = torch.log_softmax(output.double() / temperature, -1)
    p, q = log_p.exp(), log_q.exp()
    for layer, lay in enumerate(result.layers):
        assert lay.depth == pytest.approx((layer + 1) / model.n_layers)
        assert lay.p_answer == pytest.approx(float(p[layer, answer_id]), abs=TOLERANCE)
        assert lay.rank_answer == 1 + int((p[layer] > p[layer, answer_id]).sum())
        assert lay.entropy == pytest.approx(float(-(p[layer] * log_p[layer]).sum()), abs=1e-3)
        kl = float((q * (log_q - log_p[layer])).sum())
        assert lay.kl_to_output == pytest.approx(kl, abs=1e-3, rel=1e-4)
        top = torch.topk(p[layer], 3)
        assert [t for t, _ in lay.top] == [model.tokenizer.decode([i]) for i in top.indices.tolist()]
    assert result.output.p_answer == pytest.approx(float(q[answer_id]), abs=TOLERANCE)


@pytest.mark.slow
def test_a_padded_batch_gives_what_single_prompts_give(real_model):
    prompts = ["The capital of Germany is", "Paris is the capital of", "Question: What is 2 + 2? Answer:"]
    batched = trace(real_model, prompts, [" Berlin", " France", " 4"])
    for prompt, answer, together in zip(prompts, [" Berlin", " France", " 4"], batched):
        (alone,) = trace(real_model, [prompt], [answer])
        for a, b in zip(alone.layers, together.layers):
            assert a.p_answer == pytest.approx(b.p_answer, abs=TOLERANCE)
            # Deep ranks (tens of thousands) turn on near-ties within float error; the top must not.
            if min(a.rank_answer, b.rank_answer) <= 100:
                assert a.rank_answer == b.rank_answer


# Read off each embedded tokenizer once and checked by decoding: SmolLM2 adds no BOS, Gemma 3 prepends <bos> (2).
EMBEDDED_IDS = {
    "smollm2": {PROMPTS[0]: [504, 3575, 282, 4521, 314], "Paris is": [38634, 314], "pad": 2},
    "gemma3": {PROMPTS[0]: [2, 818, 5279, 529, 9405, 563], "Paris is": [2, 50429, 563], "pad": 0},
}


@pytest.mark.slow
def test_prompts_are_tokenized_as_the_model_does_not_as_transformerlens_defaults(real_model):
    known, tok = EMBEDDED_IDS[real_model.name], real_model.tokenizer
    germany, paris = known[PROMPTS[0]], known["Paris is"]
    pieces = [tok.decode([i]) for i in germany]
    assert pieces[-5:] == ["The", " capital", " of", " Germany", " is"]
    assert pieces[:-5] == ([] if real_model.name == "smollm2" else ["<bos>"])
    batch = encode(tok, [PROMPTS[0], "Paris is"], real_model.n_ctx)  # the shorter one padded on the left
    gap = len(germany) - len(paris)
    assert batch["input_ids"].tolist() == [germany, [known["pad"]] * gap + paris]
    assert batch["attention_mask"].tolist() == [[1] * len(germany), [0] * gap + [1] * len(paris)]
    if real_model.name == "smollm2":  # TransformerLens's to_tokens would prepend a BOS the model never sees
        assert real_model.bridge.to_tokens(PROMPTS[0])[0].tolist() == [tok.bos_token_id, *germany]


def word_tokenizer():
    """A tokenizer whose ids are known by hand: one id per word, no BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "The": 2, "capital": 3, "of": 4, "Germany": 5, "is": 6}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", unk_token="<unk>")


def test_a_batch_is_left_padded_with_the_pad_token_and_masked_there():
    tok = word_tokenizer()
    batch = encode(tok, ["The capital of Germany is", "Germany is", "capital"], n_ctx=5)
    assert batch["input_ids"].tolist() == [[2, 3, 4, 5, 6], [0, 0, 0, 5, 6], [0, 0, 0, 0, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]]
    with pytest.raises(LensError, match=r"^the prompt is 5 tokens, longer than the model's context of 4: shorten it$"):
        encode(tok, ["The capital of Germany is"], n_ctx=4)
    with pytest.raises(LensError, match="the prompt is empty"):
        encode(tok, ["Germany is", " "], n_ctx=5)


@pytest.mark.slow
def test_answers_follow_their_first_token_in_context(smollm2):
    tok = smollm2.tokenizer
    berlin = answer_token(tok, "The capital of Germany is", " Berlin")
    assert (berlin.token, berlin.n_tokens, berlin.note) == (" Berlin", 1, None)
    long = answer_token(tok, "The capital of Burkina Faso is", " Ouagadougou")
    assert long.n_tokens > 1 and long.token == tok.decode(
        [tok(" Ouagadougou", add_special_tokens=False)["input_ids"][0]]
    )
    assert "follows its first" in long.note


@pytest.mark.slow
def test_a_digit_answer_is_followed_after_its_leading_space_never_the_space(real_model):
    tok = real_model.tokenizer
    seven = answer_token(tok, "3 + 4 =", " 7")  # both embedded tokenizers split " 7" into " " + "7"
    assert (seven.lead, seven.token, seven.n_tokens) == (" ", "7", 1)
    (result,) = trace(real_model, ["3 + 4 ="], [" 7"])
    assert result.read_after == "3 + 4 = " and result.answer_token == "7"
    # Read one position later, the lens is the model's own output there: p("7" | "3 + 4 = ").
    (after_space,) = trace(real_model, ["3 + 4 = "], ["7"])
    assert result.output.p_answer == pytest.approx(after_space.output.p_answer, abs=TOLERANCE)
    assert "reads after it" in seven.note


@pytest.mark.slow
def test_punctuation_is_never_followed(smollm2):
    with pytest.raises(LensError, match="punctuation token"):
        answer_token(smollm2.tokenizer, "The capital of Germany is", ", Berlin")


@pytest.mark.slow
def test_a_spelling_that_starts_with_a_bare_space_is_not_a_whole_token(smollm2):
    (result,) = trace(smollm2, ["The capital of Italy is"], [" Rome"], watch=[[" Rome", " rome"]])
    whole = {w.text: w.whole for w in result.watched}
    assert whole[" Rome"] and not whole[" rome"]  # " rome" is " " + "rome" in SmolLM2


@pytest.mark.slow
@pytest.mark.parametrize("answer", ["", "   "])
def test_an_answer_that_tokenizes_to_nothing_is_refused(smollm2, answer):
    with pytest.raises(LensError, match="tokenizes to nothing"):
        trace(smollm2, ["The capital of Germany is"], [answer])


@pytest.mark.slow
def test_empty_and_too_long_prompts_are_refused(smollm2):
    with pytest.raises(LensError, match="empty"):
        trace(smollm2, [" "])
    with pytest.raises(LensError, match="longer than the model's context"):
        trace(smollm2, ["word " * (smollm2.n_ctx + 1)])


@pytest.mark.slow
def test_the_raw_lens_is_the_residual_unembedded_without_the_norm(real_pair):
    model, twin = real_pair
    residuals = collect(model, PROMPTS[:1])
    (exact,), (raw,) = read(model, residuals, [" Berlin"]), read(model, residuals, [" Berlin"], lens=RAW)
    p = torch.softmax(reference_lens(twin, model.tokenizer, PROMPTS[0], norm=False)[0], -1)
    answer_id = model.tokenizer(PROMPTS[0] + " Berlin")["input_ids"][len(model.tokenizer(PROMPTS[0])["input_ids"])]
    for layer, lay in enumerate(raw.layers):
        assert lay.p_answer == pytest.approx(float(p[layer, answer_id]), abs=TOLERANCE)
    assert (raw.lens, exact.lens) == ("raw", "exact")
    # Only the exact lens reproduces the output at the last block; the raw one is far from it.
    assert exact.final_max_abs_diff <= TOLERANCE < 1.0 <= raw.final_max_abs_diff


@pytest.mark.slow
def test_temperature_never_reorders_only_sharpens_or_flattens(real_model):
    # The notes: "Lower temperature shows what the model 'really thinks'". By construction it cannot.
    prompts, answers = ["The capital of Germany is", "Question: What is 3 + 4? Answer:"], [" Berlin", " 7"]
    residuals = collect(real_model, prompts, answers)
    at = read_at(real_model, residuals, (0.5, 1.0, 2.0), answers, top_k=10)
    for cool, base, warm in zip(at[0.5], at[1.0], at[2.0]):
        for layers in zip(cool.layers, base.layers, warm.layers):
            assert len({tuple(t for t, _ in lay.top) for lay in layers}) == 1
            assert len({lay.rank_answer for lay in layers}) == 1
        assert cool.output.top[0][1] > base.output.top[0][1] > warm.output.top[0][1]


def test_ranks_by_one_pass_equal_ranks_by_comparison():
    from lens.reads.reduce import ranks_of

    torch.manual_seed(0)
    logits = torch.randn(4, 5000)
    logits[0, 7] = logits[0, 9]  # a tie: neither counts as above the other
    index = torch.tensor([[7, 9, 100, 4999, 0], [7, 7, 3, 2, 1], [0, 0, 0, 0, 0], [4999, 1, 2, 3, 4]])
    values = logits.gather(1, index)  # each row its own followed tokens, one repeated (a padded row)
    expected = (logits[:, None, :] > values[:, :, None]).sum(-1) + 1
    assert torch.equal(ranks_of(logits, values), expected)
