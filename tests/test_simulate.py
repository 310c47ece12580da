"""lens.models.simulate: the notes' architectures from their published configurations, their random weights, and an
embedded tokenizer mapped into their vocabularies."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

from lens.errors import LensError
from lens.models import simulate
from lens.models.loader import wrap
from lens.models.registry import LocalFolder
from lens.reads.trace import trace

PUBLISHED = {"llama3": 8_030_261_248, "mistral": 7_241_732_096, "gemma2": 9_241_705_984, "qwen3": 8_190_735_360}
"""Parameter counts their publishers give (Meta-Llama-3-8B's 8.03B, Mistral 7B's 7.24B, Gemma 2 9B's 9.24B, Qwen3-8B's
8.2B of which 6.95B are not embeddings), to the parameter as safetensors indexes count them."""


def test_every_registry_model_of_the_notes_has_its_published_configuration():
    assert simulate.architectures() == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_configuration_builds_the_published_size(name):
    shape = simulate.shape_of(name)
    assert shape.parameters == PUBLISHED[name]
    if name == "qwen3":
        assert round((shape.parameters - 2 * shape.vocab * shape.d_model) / 1e9, 2) == 6.95
    half = simulate.shape_of(name, depth=shape.n_layers // 2)
    assert half.parameters == shape.parameters - (shape.n_layers - shape.n_layers // 2) * shape.block_parameters
    assert shape.at_depth(half.n_layers) == half


def test_a_depth_out_of_range_or_an_unknown_name_is_refused():
    with pytest.raises(LensError, match="between 1 and 32"):
        simulate.config_of("llama3", 33)
    with pytest.raises(LensError, match="simulate one of gemma2, llama3, mistral, qwen3"):
        simulate.config_of("gpt2")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_random_weights_are_filled_fast_and_everything_else_as_transformers_initialises_it(name):
    config = simulate.config_of(name, 2)
    for key, value in dict(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=500, head_dim=16
    ).items():
        setattr(config, key, value)
    ours = simulate.random_model(config, torch.float32)
    torch.manual_seed(0)
    theirs = hf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    for key, tensor in reference.items():
        if tensor.dim() < 2:  # norms (ones, or zeros where Gemma reads 1 + w), biases
            assert torch.equal(mine[key], tensor), key
        else:  # matrices: normal, with transformers' standard deviation
            assert abs(float(mine[key].std()) - config.initializer_range) < 0.1 * config.initializer_range, key
    for (key, buffer), (_, expected) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert torch.equal(buffer, expected), key  # rotary frequencies


def test_a_mapped_tokenizer_reads_the_models_vocabulary_and_decodes_what_it_encoded(tiny_tokenizer):
    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    vocab = 300  # fewer than the tokenizer's 400: ids past it are folded in, as SmolLM2's are for Mistral's 32,000
    mapped = simulate.mapped_tokenizer(tokenizer, vocab)
    assert isinstance(mapped, type(tokenizer)) and isinstance(mapped, hf.PreTrainedTokenizerBase)
    text = "Berlin is the capital of Germany. Rome is the capital of Italy."
    original = tokenizer(text)["input_ids"]
    assert max(original) >= vocab  # the case the mapping is for
    ids = mapped(text)["input_ids"]
    assert ids == [i % vocab for i in original]
    assert mapped.decode(ids) == text
    batch = mapped([text, "Rome"], return_tensors="pt", padding=True)["input_ids"]
    assert int(batch.max()) < vocab
    # an id the tokenizer lacks (a random model writes any of its vocabulary) decodes as a token it has
    wide = simulate.mapped_tokenizer(tokenizer, 5000)
    assert wide.decode([4321]) == tokenizer.decode([4321 % len(tokenizer)])
    assert tokenizer(text)["input_ids"] == original  # the tokenizer itself is untouched


def test_a_model_read_through_a_mapped_tokenizer_is_read_at_its_own_vocabulary(tiny_tokenizer):
    """The lens reads the model's vocabulary (here larger than the tokenizer's), and its last block is the output."""
    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = simulate.config_of("llama3", 2)
    for key, value in dict(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000
    ).items():
        setattr(config, key, value)
    model = wrap(
        LocalFolder(name="sim", path=tiny_tokenizer),
        simulate.random_model(config, torch.float32),
        simulate.mapped_tokenizer(tokenizer, 1000),
        "cpu",
        "simulated",
    )
    [read] = trace(model, ["The capital of Germany is"], [" Berlin"])
    assert int(model.bridge.cfg.d_vocab) == 1000
    assert read.final_max_abs_diff <= 1e-4 * read.output_max_abs_logit
