"""Code that runs inside an nnsight trace: on the model here, and on NDIF inside a job (`lens.remote`).

It travels with a remote request by value, as `lens.reads.reduce` and `lens.models.exact` do (NDIF has no
`lens` package, and its sandbox imports torch but little else), so it holds plain functions over envoys and tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lens.models.exact import exact_logits
from lens.reads.reduce import reduce_lenses, top1


def last_block_outputs(layers: Any, position: int | None = -1) -> torch.Tensor:
    """Every decoder layer's output at one position, (batch, n_layers, d_model), or at every position
    (`position` None: (batch, n_layers, positions, d_model)). NDIF loads a model with device_map="auto", its
    blocks on several GPUs: the outputs meet where the last block is, which is where the final norm receives
    the residual stream."""
    kept = []
    for layer in layers:
        out = layer.output
        hidden = out[0] if isinstance(out, tuple) else out  # some blocks return (hidden, ...)
        kept.append(hidden if position is None else hidden[:, position])
    return torch.stack([hidden.to(kept[-1].device) for hidden in kept], dim=1)


def lens_figures(
    nn: Any,
    layers: Any,
    norm: Any,
    head: Any,
    softcap: float | None,
    lenses: Sequence[str],
    ids: dict[str, torch.Tensor],
    output_ids: torch.Tensor,
    top_k: int,
    temperatures: Sequence[float],
) -> dict[str, dict[str, torch.Tensor]]:
    """Inside a trace over a batch: each lens ("exact": final norm, unembedding, soft-cap; "raw": the unembedding
    alone) reduced at the last position (`lens.reads.reduce.reduce_lenses`). On a model spread over several GPUs the
    lens's logits come out where the unembedding is (with a tied embedding, the first GPU), not where the last
    block is: the reduction brings the output to them (`lens.reads.reduce.reduce`)."""
    resid = last_block_outputs(layers)
    output = nn.output.logits[:, -1]
    makers = {"exact": lambda rows: exact_logits(norm, head, rows, softcap), "raw": lambda rows: head(rows)}
    chosen = {name: makers[name] for name in lenses}
    return reduce_lenses(chosen, resid, output, ids, top_k, temperatures, output_ids)


def grid_figures(layers: Any, norm: Any, head: Any, softcap: float | None) -> dict[str, torch.Tensor]:
    """Inside a trace over one prompt: the exact lens's top token and its probability at every (block, position)."""
    resid = last_block_outputs(layers, position=None)[0]  # (n_layers, positions, d_model)
    p, ids = top1(exact_logits(norm, head, resid, softcap))
    return {"p": p, "ids": ids}


def patched_p(nn: Any, layers: Any, k: int, where: torch.Tensor, target: int) -> torch.Tensor:
    """Inside a trace over [clean, corrupted, corrupted x (n_layers * k)] rows of one length: at each block, the
    clean row's output at the `k` positions `where` goes into that block's k rows (block-major after the first
    two), one position each, before the next block reads them; then p(target) at the last position, per row."""
    for i, layer in enumerate(layers):
        out = layer.output
        hidden = out[0] if isinstance(out, tuple) else out
        at = where.to(hidden.device)
        hidden[2 + i * k + torch.arange(k, device=hidden.device), at] = hidden[0, at]
    logits = nn.output.logits[:, -1]
    return torch.softmax(logits.float(), dim=-1)[:, target].clone()  # not a view: only these values travel
