"""The notes' models at full size without their weights: each architecture built from its published configuration
(`lens/configs/NAME.json`, beside models.toml) with random weights, in the dtype and at the depth asked, wrapped as
`lens.load` wraps a real model. What it is for: measuring what a run costs at the user's scale (time and memory per
phase), where the weights cannot be downloaded. Nothing it computes is a finding: random weights answer nothing.

Prompts are tokenized by an embedded model's tokenizer (SmolLM2's by default: it has a chat template, and its
49,152 tokens are fewer than any of the four models' vocabularies but Mistral's), its ids mapped into the model's
vocabulary (`mapped_tokenizer`), so the lens reads the model's real vocabulary (128,256 tokens for Llama 3).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import torch

from lens.errors import LensError
from lens.models.device import DTYPES, weight_bytes
from lens.models.model import LoadedModel

CONFIGS = files("lens") / "configs"
"""One published config.json per architecture, named by the model's registry name (llama3.json...)."""
TOKENIZER = "smollm2"
"""The embedded model whose tokenizer the simulated models read their prompts with."""
SEED = 0


def architectures() -> list[str]:
    """The registry names that have a published configuration here."""
    return sorted(entry.name.removesuffix(".json") for entry in CONFIGS.iterdir() if entry.name.endswith(".json"))


def config_values(name: str) -> dict[str, Any]:
    """The published config.json values of one architecture."""
    entry = CONFIGS / f"{name}.json"
    if not entry.is_file():
        raise LensError(f"no published configuration for {name!r} here: simulate one of {', '.join(architectures())}")
    return json.loads(entry.read_text())


def config_of(name: str, depth: int | None = None) -> Any:
    """The transformers config of one architecture, with `depth` blocks instead of its own where given (width and
    vocabulary stay)."""
    from transformers import AutoConfig

    values = config_values(name)
    full = values["num_hidden_layers"]
    if depth is not None and not 1 <= depth <= full:
        raise LensError(f"{name} has {full} blocks: simulate between 1 and {full}")
    values = dict(values, num_hidden_layers=depth or full)
    if "max_window_layers" in values:  # Qwen: a layer count, at most the depth
        values["max_window_layers"] = min(values["max_window_layers"], values["num_hidden_layers"])
    return AutoConfig.for_model(values.pop("model_type"), **values)


@dataclass(frozen=True)
class Shape:
    """What an architecture's size is, from its configuration alone (no weight built)."""

    name: str
    n_layers: int
    d_model: int
    vocab: int
    parameters: int
    """All parameters at this depth (a tied embedding counted once)."""
    block_parameters: int
    """Parameters of one block."""

    def weight_bytes(self, dtype: str) -> int:
        return weight_bytes(self.parameters, DTYPES[dtype])

    def at_depth(self, depth: int) -> Shape:
        """The same architecture with `depth` blocks."""
        return Shape(
            self.name,
            depth,
            self.d_model,
            self.vocab,
            self.parameters + (depth - self.n_layers) * self.block_parameters,
            self.block_parameters,
        )


def shape_of(name: str, depth: int | None = None) -> Shape:
    """The architecture's size, counted on a model built on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM

    config = config_of(name, depth)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())  # a tied one once
    block = sum(p.numel() for p in model.get_decoder().layers[0].parameters())
    return Shape(name, config.num_hidden_layers, config.hidden_size, config.vocab_size, parameters, block)


def mapped_tokenizer(tokenizer: Any, vocab: int) -> Any:
    """A copy of `tokenizer` whose ids live in a vocabulary of `vocab` tokens: an id past it is taken modulo
    `vocab` when text is encoded (remembered, so decoding it gives the text it came from), and an id the
    tokenizer does not have (a random model writes any of its `vocab`) decodes as the tokenizer's id modulo its
    size. A `transformers` tokenizer still (TransformerLens checks), only its encoding and decoding mapped."""
    base = type(tokenizer)
    size = len(tokenizer)
    came_from: dict[int, int] = {}

    def into(ids: Any) -> Any:
        if isinstance(ids, torch.Tensor):
            over = ids >= vocab
            for original in ids[over].unique().tolist():
                came_from[original % vocab] = original
            return torch.where(over, ids % vocab, ids)
        if isinstance(ids, int):
            if ids >= vocab:
                came_from[ids % vocab] = ids
                return ids % vocab
            return ids
        return [into(i) for i in ids]

    def out_of(ids: Any) -> Any:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            return came_from.get(ids, ids if ids < size else ids % size)
        return [out_of(i) for i in ids]

    class Mapped(base):  # type: ignore[misc, valid-type]
        def _encode_plus(self, *args: Any, **kwargs: Any) -> Any:
            encoded = super()._encode_plus(*args, **kwargs)
            encoded["input_ids"] = into(encoded["input_ids"])
            return encoded

        def _decode(self, token_ids: Any, *args: Any, **kwargs: Any) -> str:
            return super()._decode(out_of(token_ids), *args, **kwargs)

        def convert_ids_to_tokens(self, ids: Any, *args: Any, **kwargs: Any) -> Any:
            return super().convert_ids_to_tokens(out_of(ids), *args, **kwargs)

    Mapped.__name__ = Mapped.__qualname__ = base.__name__
    mapped = copy.deepcopy(tokenizer)
    mapped.__class__ = Mapped
    return mapped


POOL = 1 << 24
"""Random values drawn once per build; every weight matrix is filled from them at random offsets (`random_model`)."""


def random_model(config: Any, dtype: torch.dtype, seed: int = SEED) -> Any:
    """A transformers model of `config` in `dtype` with random weights, built in seconds rather than minutes: its
    matrices (every parameter of two or more dimensions) are filled with runs of `POOL` normal values (standard
    deviation `initializer_range`) taken at random offsets, instead of one normal draw per weight (about 250 s for
    8B parameters on 2 cores); everything else (norms, biases, buffers) is initialised by transformers itself."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    generator = torch.Generator().manual_seed(seed)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    pool = torch.randn(POOL, generator=generator) * getattr(config.get_text_config(), "initializer_range", 0.02)
    with torch.no_grad():
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if own and all(p.dim() < 2 for p in own):
                model._init_weights(module)  # norms (ones, or zeros where the norm is 1 + w): cheap
            for param in own:
                if param.dim() >= 2:
                    flat, done = param.view(-1), 0
                    while done < flat.numel():
                        start = int(torch.randint(0, POOL // 2, (1,), generator=generator))
                        take = min(flat.numel() - done, POOL - start)
                        flat[done : done + take].copy_(pool[start : start + take])
                        done += take
                elif not (own and all(p.dim() < 2 for p in own)):
                    param.zero_()  # a bias beside a matrix: transformers' init makes it zero
    model.tie_weights()
    return model.eval()


def embedded_tokenizer(name: str = TOKENIZER) -> Any:
    """An embedded model's own tokenizer, from the lens cache (`lens download --embedded` puts it there)."""
    from transformers import AutoTokenizer

    from lens.models.registry import resolve

    folder, _ = resolve(name).weights_folder()
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def build(
    name: str, depth: int | None = None, dtype: str = "bfloat16", tokenizer: str = TOKENIZER, seed: int = SEED
) -> LoadedModel:
    """The architecture with random weights (seed `seed`) in `dtype` on the CPU, at `depth` blocks (None: its
    own), wrapped for the lens as `lens.load` wraps a real model. Its spec is the registry's (chat form, published
    lenses named); its `weights_id` says what it is, so nothing kept for real weights is read for it."""
    from lens.models.loader import _quiet_libraries, wrap
    from lens.models.registry import resolve

    if dtype not in DTYPES:
        raise LensError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    _quiet_libraries()
    config = config_of(name, depth)
    text = embedded_tokenizer(tokenizer)
    hf_model = random_model(config, DTYPES[dtype], seed)
    digest = hashlib.sha256(json.dumps(config_values(name), sort_keys=True).encode()).hexdigest()[:12]
    weights_id = (
        f"simulated {name}: random weights (seed {seed}), {config.num_hidden_layers} blocks, "
        f"config {digest}, {tokenizer}'s tokenizer"
    )
    return wrap(resolve(name), hf_model, mapped_tokenizer(text, config.vocab_size), "cpu", weights_id)
