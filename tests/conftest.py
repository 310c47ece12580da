"""Fixtures for the library tests: small random-weight models of every architecture the notes name
(built from configs, nothing downloaded) and the two embedded real models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import transformers as hf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lens.loader import LoadedModel, load, wrap
from lens.registry import LocalFolder

CORPUS = [
    "The capital of Germany is Berlin.",
    "Question: What is the capital of France? Answer: Paris",
    "Berlin is the capital of Germany. Rome is the capital of Italy.",
]
SIZES = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2,
)
ARCHITECTURES = {
    "llama": (hf.LlamaConfig, {}),
    "mistral": (hf.MistralConfig, {}),
    # A small cap so soft-capping changes logits far beyond the 1e-4 tolerance.
    "gemma2": (hf.Gemma2Config, {"head_dim": 16, "final_logit_softcapping": 2.0}),
    "qwen3": (hf.Qwen3Config, {"head_dim": 16}),
    "qwen2": (hf.Qwen2Config, {}),
    "phi3": (hf.Phi3Config, {}),
    "gemma3": (hf.Gemma3TextConfig, {"head_dim": 16}),
}


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained on a few sentences, saved to disk (the bridge reloads it)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<bos>", "<eos>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    folder = tmp_path_factory.mktemp("tokenizer")
    hf.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    ).save_pretrained(folder)
    return folder


def random_model(arch: str, tokenizer_folder) -> LoadedModel:
    """A random-weight model of one architecture, wrapped exactly as `lens.load` wraps real ones."""
    config_class, extra = ARCHITECTURES[arch]
    tokenizer = hf.AutoTokenizer.from_pretrained(tokenizer_folder)
    config = config_class(
        vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1, pad_token_id=2, **SIZES, **extra
    )
    torch.manual_seed(0)
    hf_model = hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    spec = LocalFolder(name=f"tiny-{arch}", path=Path(tokenizer_folder), title=f"random {arch}")
    return wrap(spec, hf_model, tokenizer, device="cpu", weights_id="random")


@pytest.fixture(autouse=True)
def _jobs_of_this_test_only(tmp_path, monkeypatch):
    """Remote jobs' results are kept per test: one test's kept results never answer another's."""
    monkeypatch.setenv("LENS_JOBS_DIR", str(tmp_path / "ndif-jobs"))


REAL_MODELS = {"smollm2", "gemma3", "real_model"}
"""Fixtures that load an embedded model: a test using one is marked `slow`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_MODELS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", params=list(ARCHITECTURES))
def tiny_model(request, tiny_tokenizer) -> LoadedModel:
    return random_model(request.param, tiny_tokenizer)


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    return load("smollm2", device="cpu")


@pytest.fixture(scope="session")
def gemma3() -> LoadedModel:
    return load("gemma3", device="cpu")


@pytest.fixture(scope="session", params=["smollm2", "gemma3"])
def real_model(request) -> LoadedModel:
    return request.getfixturevalue(request.param)
