"""What a remote job brings back: its size before it is sent (the estimates a run prints, and the claims' cost
model), the batches' results joined, and the exactness check every local load makes, on the lens NDIF reduced."""

from __future__ import annotations

from typing import Any

import torch

from lens.errors import LensError
from lens.models.device import RELATIVE_TOLERANCE
from lens.remote import jobs


def lens_job_bytes(n_layers: int, args: dict[str, Any]) -> int:
    """The size of a lens job's result, from the shapes it will have."""
    b, candidates = args["output_ids"].shape
    followed = {name: follow.shape[1] for name, follow in args["ids"].items()}
    return lens_bytes(n_layers, b, followed, args["top_k"], len(args["temperatures"]), candidates)


def continuation_bytes(prompts: int, max_new_tokens: int) -> int:
    """About what a continuation job brings back: per prompt and step a token id (int64) and its margin
    (float32)."""
    return jobs.saved_bytes(prompts * max_new_tokens * (8 + 4), 2)


def lens_bytes(
    n_layers: int, prompts: int, followed: dict[str, int], top_k: int = 5, temperatures: int = 1, candidates: int = 0
) -> int:
    """The size of a lens job's result (`lens.reads.reduce.reduce` per lens, as saved): `prompts` prompts, each lens
    following `followed[lens]` tokens, with the output logits of `candidates` more ids."""
    total, tensors = 4 * prompts * candidates, 1
    for f in followed.values():
        total += (
            4 * prompts * (n_layers * (2 * f + 2 * top_k + 3 * temperatures) + 2 * f + 2 * top_k + 2 * temperatures + 2)
        )
        tensors += 15
    return jobs.saved_bytes(total, tensors)


def join(parts_: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batches' reductions as one: concatenated over prompts, a batch that follows fewer tokens padded (its
    extra columns are never read: each prompt's columns are named by its own ids)."""
    joined = {}
    for key in parts_[0]:
        tensors = [part[key] for part in parts_]
        width = max(t.shape[-1] for t in tensors) if tensors[0].dim() > 1 else None
        if width is not None:
            tensors = [torch.cat([t, t.new_zeros(*t.shape[:-1], width - t.shape[-1])], dim=-1) for t in tensors]
        joined[key] = torch.cat(tensors)
    return joined


def require_exact(model: Any, reduced: dict[str, torch.Tensor]) -> None:
    """The check every local load makes: the lens at the last block is the model's output (as NDIF ran it)."""
    relative = float((reduced["final_diff"] / reduced["out_max_abs"].clamp_min(1e-12)).max())
    tolerance = RELATIVE_TOLERANCE.get(model.dtype, RELATIVE_TOLERANCE[torch.bfloat16])
    if not relative <= tolerance:
        raise LensError(
            f"the lens is not exact on {model.repo} as NDIF runs it: its last block differs from the "
            f"output by {relative:.1e} of the logits' scale (tolerance {tolerance:.0e})"
        )
