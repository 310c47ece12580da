"""The classic logit-lens picture: the lens's top token at every (block, prompt position)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from lens.lenses.lenses import EXACT
from lens.models.bridge import block_hooks
from lens.models.model import Model
from lens.reads.reduce import top1
from lens.tokens import encode


@dataclass(frozen=True)
class LensGrid:
    """The top token at every (layer, position) for one prompt."""

    model: str
    prompt: str
    tokens: tuple[str, ...]
    """The prompt's tokens as the model sees them (BOS included where the model adds it)."""
    top1: tuple[tuple[str, ...], ...]
    """(n_layers, positions): the lens's top token predicting the *next* token at each position."""
    p: tuple[tuple[float, ...], ...]
    """(n_layers, positions): its probability."""


@torch.inference_mode()
def lens_grid(model: Model, prompt: str) -> LensGrid:
    """The exact lens at every block and every prompt position (one forward pass; a model on NDIF's there, where
    only each cell's top token and its probability are computed and sent back)."""
    batch = encode(model.tokenizer, [prompt], model.n_ctx)
    ids = batch["input_ids"][0].tolist()
    decode = model.tokenizer.decode
    top_i, top_p = grid_cells(model, prompt, batch)
    return _grid(model.name, prompt, [decode([i]) for i in ids], top_i, top_p, decode)


@functools.singledispatch
def grid_cells(model: Model, prompt: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cell's top token id and its probability, (n_layers, positions) each, from one forward pass here (a
    model on NDIF computes them there: `lens.remote.reads`)."""
    names = block_hooks(model)
    _, cache = model.bridge.run_with_cache(
        batch["input_ids"].to(model.device),
        attention_mask=batch["attention_mask"].to(model.device),
        names_filter=names,
    )
    resid = torch.stack([cache[name][0] for name in names])  # (n_layers, positions, d_model)
    top_p, top_i = top1(EXACT.logits(model, resid))
    return top_i, top_p


def _grid(model: str, prompt: str, tokens: list[str], top_i: torch.Tensor, top_p: torch.Tensor, decode) -> LensGrid:
    """The grid from each cell's top token id and probability, (n_layers, positions) each."""
    return LensGrid(
        model=model,
        prompt=prompt,
        tokens=tuple(tokens),
        top1=tuple(tuple(decode([i]) for i in row) for row in top_i.tolist()),
        p=tuple(tuple(row) for row in top_p.tolist()),
    )
