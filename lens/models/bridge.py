"""A model as it runs here: the bridge's forward pass keeping what the lens reads, and the Hugging Face model
as transformers built it under TransformerBridge's wrappers.

TransformerBridge replaces the Hugging Face model's submodules in place with wrappers (each keeps the module it
wraps as `original_component`). What must see the model as transformers built it (its own generation, the spot
checks, nnsight, a tuned lens's training) reads `plain_view(model.hf_model)`: the original modules again, by
shallow copies that share every weight (no memory) and leave the bridge's tree as it is.
"""

from __future__ import annotations

import copy
import functools
import types
from typing import Any, NamedTuple

import torch

from lens.errors import LensError
from lens.models.device import mps_matmul_hazard


class Reads(NamedTuple):
    """What one forward pass over a batch leaves for the lens, at each prompt's last position."""

    resid: torch.Tensor
    """Block outputs, (batch, n_layers, d_model)."""
    output_logits: torch.Tensor
    """The model's output logits, (batch, vocab)."""


def block_hooks(model: Any) -> list[str]:
    """The bridge's hook names of every block's output, in order."""
    return [f"blocks.{i}.hook_out" for i in range(model.n_layers)]


def refuse_hazard(model: Any, batch: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line, a batch the model's device is known to compute wrongly (`mps_matmul_hazard`)."""
    if str(getattr(model, "device", "")).startswith("mps"):
        hazard = mps_matmul_hazard({"prompt length": int(batch["input_ids"].shape[1])})
        if hazard:
            raise LensError(hazard)


def bridge_forward(model: Any, batch: dict[str, torch.Tensor]) -> Reads:
    """The bridge backend: `run_with_cache`, caching only the block outputs."""
    names = block_hooks(model)
    logits, cache = model.bridge.run_with_cache(
        batch["input_ids"].to(model.device),
        attention_mask=batch["attention_mask"].to(model.device),
        names_filter=names,
        logits_to_keep=1,  # the output is read at the last position only: unembed only that
    )
    resid = torch.stack([cache[name][:, -1] for name in names], dim=1)
    return Reads(resid, logits[:, -1])


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def plain_view(module: torch.nn.Module, _memo: dict | None = None) -> torch.nn.Module:
    """The module tree as transformers built it, under TransformerBridge's in-place wrappers.

    Each bridge component is replaced by the module it wraps; a module with a wrapped module anywhere below it
    is a shallow copy (same parameters and buffers, its own child table and hook tables), so neither the
    bridge's tree nor any weight is touched. Methods that accelerate's big-model hooks bound to a copied module
    (offloading) are bound to the copy."""
    memo = {} if _memo is None else _memo
    if id(module) in memo:
        return memo[id(module)]
    original = module
    while isinstance(getattr(original, "original_component", None), torch.nn.Module):
        original = original.original_component
    children = {name: None if child is None else plain_view(child, memo) for name, child in original._modules.items()}
    if all(children[name] is child for name, child in original._modules.items()):
        view = original
    else:
        view = copy.copy(original)
        view._modules = children
        for name in _HOOK_DICTS:
            if name in original.__dict__:
                view.__dict__[name] = type(original.__dict__[name])(original.__dict__[name])
        _rebind(view, original)
    memo[id(module)] = view
    return view


def _rebind(view: torch.nn.Module, original: torch.nn.Module) -> None:
    """Rebind to a copy what is bound to the original: accelerate's hooked `forward` (a partial over the
    module) and the `_old_forward` it calls (a bound method)."""
    for name, value in list(view.__dict__.items()):
        if isinstance(value, functools.partial) and value.args[:1] == (original,):
            rebound = functools.partial(value.func, view, *value.args[1:], **value.keywords)
            view.__dict__[name] = functools.update_wrapper(rebound, value)
        elif isinstance(value, types.MethodType) and value.__self__ is original:
            view.__dict__[name] = types.MethodType(value.__func__, view)
