"""Fixtures for the library tests: small random-weight models of every architecture the notes name
(built from configs, nothing downloaded) and the two embedded real models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import transformers as hf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lens.models.loader import LoadedModel, load, wrap
from lens.models.registry import LocalFolder
from tests.reference import plain_twin

CORPUS = [
    "The capital of Germany is Berlin.",
    "Question: What is the capital of France? Answer: Paris",
    "Berlin is the capital of Germany. Rome is the capital of Italy.",
]
SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=0.2,
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
            vocab_size=400,
            special_tokens=["<bos>", "<eos>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    folder = tmp_path_factory.mktemp("tokenizer")
    hf.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    ).save_pretrained(folder)
    return folder


def random_hf_model(arch: str, tokenizer) -> hf.PreTrainedModel:
    """A random-weight transformers model of one architecture (seed 0), sized to the tokenizer."""
    config_class, extra = ARCHITECTURES[arch]
    config = config_class(vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1, pad_token_id=2, **SIZES, **extra)
    torch.manual_seed(0)
    return hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")


def random_model(arch: str, tokenizer_folder) -> LoadedModel:
    """A random-weight model of one architecture, wrapped exactly as `lens.load` wraps real ones."""
    tokenizer = hf.AutoTokenizer.from_pretrained(tokenizer_folder)
    hf_model = random_hf_model(arch, tokenizer)
    spec = LocalFolder(name=f"tiny-{arch}", path=Path(tokenizer_folder), title=f"random {arch}")
    return wrap(spec, hf_model, tokenizer, device="cpu", weights_id="random")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random-weight Llama saved as a model folder (config, weights, tokenizer): what `lens` loads by path,
    through the whole loader, with nothing downloaded (context: SIZES' 256 positions)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    random_hf_model("llama", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _jobs_of_this_test_only(tmp_path, monkeypatch):
    """Remote jobs' results and the findings' readings are kept per test: one test's kept results never answer
    another's (nor a findings run of the user's, nor one of a subprocess a test starts)."""
    monkeypatch.setenv("LENS_JOBS_DIR", str(tmp_path / "ndif-jobs"))
    monkeypatch.setenv("LENS_READINGS_DIR", str(tmp_path / "readings"))


MODEL_FIXTURES = frozenset({"smollm2", "gemma3", "real_model"})
"""Fixtures that load an embedded model (`real_model` names its model at run time, so it is listed too): a test
that asks for one, itself or through another fixture, is marked `slow` by hand, or the collection stops."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Stop the collection, naming them, where tests load an embedded model unmarked (`-m "not slow"` would)."""
    unmarked = [
        item.nodeid
        for item in items
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        more = f" and {len(unmarked) - 3} more" if len(unmarked) > 3 else ""
        raise pytest.UsageError(
            f"not marked slow, yet loading an embedded model: {', '.join(unmarked[:3])}{more}; "
            "mark each @pytest.mark.slow, or its module pytestmark = pytest.mark.slow"
        )


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


@pytest.fixture(scope="session")
def twin_of() -> Callable[[LoadedModel], torch.nn.Module]:
    """`twin_of(model)`: the plain transformers copy of an embedded model's weights (tests/reference.py), built
    once per model for the session (each costs a load). Read only: hooks are removed after each use."""
    twins: dict[str, torch.nn.Module] = {}

    def twin(model: LoadedModel) -> torch.nn.Module:
        if model.weights_id not in twins:
            twins[model.weights_id] = plain_twin(model)
        return twins[model.weights_id]

    return twin


@pytest.fixture
def cli_smollm2(smollm2, monkeypatch) -> LoadedModel:
    """The `lens` command's load of smollm2 on the CPU (default dtype, no offload) answered with the session's
    smollm2, what that load gives (the same file, device and dtype; tests/test_loader.py checks a second load
    equals the first): the command's own tests then do not load it again. Any other load goes through."""
    import lens.models.loader

    real_load = lens.models.loader.load

    def load(name_or_path, device=None, dtype=None, offload=None, **kwargs):
        if (name_or_path, device, dtype, offload, kwargs) == ("smollm2", "cpu", None, None, {}):
            return smollm2
        return real_load(name_or_path, device=device, dtype=dtype, offload=offload, **kwargs)

    monkeypatch.setattr(lens.models.loader, "load", load)
    return smollm2
