"""Where the last prompt position looks: attention patterns per layer, from TransformerLens's hooks."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from lens.models.model import Model
from lens.tokens import encode


@dataclass(frozen=True)
class AttentionFromLast:
    """Attention from the last prompt position to every position, at every layer."""

    model: str
    prompt: str
    tokens: tuple[str, ...]
    mean: tuple[tuple[float, ...], ...]
    """(n_layers, positions): attention weights averaged over heads."""
    top_heads: tuple[tuple[int, int, int, float], ...]
    """Per layer, the head putting most weight on one non-first position: (layer, head, position, weight)."""


@functools.singledispatch
@torch.inference_mode()
def attention_from_last(model: Model, prompt: str) -> AttentionFromLast:
    """One forward pass caching only the attention patterns (a model here only: one on NDIF says why not,
    `lens.remote.reads`)."""
    batch = encode(model.tokenizer, [prompt], model.n_ctx)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.n_layers)]
    _, cache = model.bridge.run_with_cache(
        batch["input_ids"].to(model.device),
        attention_mask=batch["attention_mask"].to(model.device),
        names_filter=names,
        logits_to_keep=1,
    )
    # hook_pattern: (batch, heads, query positions, key positions); the query is the last position.
    rows = torch.stack([cache[name][0, :, -1, :].float() for name in names]).cpu()  # (layers, heads, keys)
    top_heads = []
    for layer, heads in enumerate(rows):
        rest = heads[:, 1:]  # the first position is the usual attention sink
        flat = int(rest.argmax())
        head, position = divmod(flat, rest.shape[1])
        top_heads.append((layer, head, position + 1, float(rest[head, position])))
    decode = model.tokenizer.decode
    return AttentionFromLast(
        model=model.name,
        prompt=prompt,
        tokens=tuple(decode([i]) for i in batch["input_ids"][0].tolist()),
        mean=tuple(tuple(row) for row in rows.mean(1).tolist()),
        top_heads=tuple(top_heads),
    )


def token_positions(model: Model, prompt: str, word: str) -> list[int]:
    """The positions of the prompt's tokens that spell `word` (its first occurrence)."""
    start = prompt.index(word)
    end = start + len(word)
    encoded = model.tokenizer(prompt, return_offsets_mapping=True)
    return [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < end and b > start and b > a]
