"""Execution backends for the forward pass the lens reads: TransformerLens's bridge, or nnsight.

Each backend runs a batch once and keeps, per prompt, only what the lens needs at the last position: every
block's output (the residual stream after the block) and the model's output logits. The lens arithmetic
(final norm, unembedding, soft-cap) and the statistics stay one implementation (`lens.lenses.lenses`,
`lens.reads.trace`).

- `bridge`: `TransformerBridge.run_with_cache`, caching only the blocks' `hook_out`.
- `nnsight`: nnsight's `TransformersModel` around the Hugging Face model as transformers built it, reading
  each decoder layer's `.output` and the model's `.output.logits`. The same trace runs on NDIF for a model
  that is not here (`lens.remote`), where the lens is reduced inside the job (`lens.reads.reduce`), so only figures
  come back, never activations.

nnsight must see the model as transformers built it, the tree NDIF runs, so it wraps
`lens.models.bridge.plain_view(model.hf_model)`.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch

from lens.errors import LensError
from lens.models.bridge import Reads, bridge_forward, plain_view, refuse_hazard

BACKENDS = ("bridge", "nnsight")
"""The execution backends `collect` and the command line take."""


def forward(model: Any, batch: dict[str, torch.Tensor], backend: str = "bridge") -> Reads:
    """Run one batch (left-padded `input_ids` and `attention_mask`, from `lens.tokens.encode`) through a
    backend, on the model here (a model on NDIF has no modules here: its batches go there as jobs, `lens.remote`)."""
    if backend not in BACKENDS:
        raise LensError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    refuse_hazard(model, batch)
    return bridge_forward(model, batch) if backend == "bridge" else nnsight_forward(model, batch)


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
