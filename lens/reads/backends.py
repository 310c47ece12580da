"""Execution backends for the forward pass the lens reads: TransformerLens's bridge, or nnsight.

Each backend runs a batch once and keeps, per prompt, only what the lens needs at the last position: every
block's output (the residual stream after the block) and the model's output logits. The lens arithmetic
(final norm, unembedding, soft-cap) and the statistics stay one implementation (`lens.lenses.lenses`, `lens.reads.trace`).

- `bridge`: `TransformerBridge.run_with_cache`, caching only the blocks' `hook_out`.
- `nnsight`: nnsight's `TransformersModel` around the Hugging Face model as transformers built it, reading
  each decoder layer's `.output` and the model's `.output.logits`. The same trace runs on NDIF for a model
  that is not here (`lens.remote`), where the lens is reduced inside the job (`lens.reads.reduce`), so only figures
  come back, never activations.

TransformerBridge replaces the Hugging Face model's submodules in place with wrappers (each keeps the module it
wraps as `original_component`). nnsight must see the model as transformers built it, the tree NDIF runs, so it
wraps `plain_view(model.hf_model)`: the original modules again, by shallow copies that share every weight
(no memory) and leave the bridge's tree as it is.
"""

from __future__ import annotations

import copy
import functools
import types
import weakref
from typing import Any, NamedTuple

import torch

from lens.models.device import mps_matmul_hazard
from lens.errors import LensError

BACKENDS = ("bridge", "nnsight")
"""The execution backends `collect` and the command line take."""


class Reads(NamedTuple):
    """What one forward pass over a batch leaves for the lens, at each prompt's last position."""

    resid: torch.Tensor
    """Block outputs, (batch, n_layers, d_model)."""
    output_logits: torch.Tensor
    """The model's output logits, (batch, vocab)."""


def forward(model: Any, batch: dict[str, torch.Tensor], backend: str = "bridge") -> Reads:
    """Run one batch (left-padded `input_ids` and `attention_mask`, from `lens.tokens.encode`) through a
    backend, on the model here (a remote model's batches go to NDIF as jobs: `lens.remote`)."""
    if backend not in BACKENDS:
        raise LensError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if str(getattr(model, "device", "")).startswith("mps"):
        hazard = mps_matmul_hazard({"prompt length": int(batch["input_ids"].shape[1])})
        if hazard:
            raise LensError(hazard)
    if getattr(model, "remote", False):
        raise LensError(f"{model.name} runs remotely: its batches go to NDIF as jobs (lens.reads.trace.collect)")
    return bridge_forward(model, batch) if backend == "bridge" else nnsight_forward(model, batch)


def block_hooks(model: Any) -> list[str]:
    """The bridge's hook names of every block's output, in order."""
    return [f"blocks.{i}.hook_out" for i in range(model.n_layers)]


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


def nnsight_forward(model: Any, batch: dict[str, torch.Tensor]) -> Reads:
    """The nnsight backend, on the model here."""
    return nnsight_reads(nnsight_model(model), batch)


def nnsight_reads(nn: Any, batch: dict[str, torch.Tensor]) -> Reads:
    """One nnsight trace over a batch, saving only the last position of each decoder layer's output and of the
    output logits. Left padding puts every prompt's last token at position -1 (nnsight then derives position
    ids from the mask, as transformers' generation does)."""
    import nnsight

    from lens.reads.intrace import last_block_outputs

    layers, _, _ = parts(nn)
    with nn.trace(dict(batch), logits_to_keep=1):
        resid = nnsight.save(last_block_outputs(layers))
        output = nnsight.save(nn.output.logits[:, -1])
    return Reads(resid, output)


def parts(nn: Any) -> tuple[Any, Any, Any]:
    """The envoys of the decoder layers, the final norm and the unembedding of a causal LM."""
    hf = nn._module
    decoder, head = hf.get_decoder(), hf.get_output_embeddings()
    names = {id(module): name for name, module in hf.named_modules()}
    try:
        layers, norm = decoder.layers, decoder.norm
        paths = names[id(layers)], names[id(norm)], names[id(head)]
    except (AttributeError, KeyError) as error:
        raise LensError(
            f"the nnsight backend does not know where {type(hf).__name__} keeps its blocks, final norm and "
            "unembedding: use --backend bridge"
        ) from error
    return tuple(functools.reduce(getattr, path.split("."), nn) for path in paths)


_WRAPPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""bridge -> its nnsight model, wrapped once per loaded model (released with it)."""


def nnsight_model(model: Any) -> Any:
    """nnsight's TransformersModel around a loaded model's Hugging Face model as transformers built it."""
    wrapped = _WRAPPED.get(model.bridge)
    if wrapped is None:
        from nnsight import TransformersModel

        wrapped = TransformersModel(plain_view(model.hf_model), tokenizer=model.tokenizer, task="text-generation")
        _WRAPPED[model.bridge] = wrapped
    return wrapped


_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
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
