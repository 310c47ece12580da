"""What makes the logit lens exact, and the check every load makes that it is: the model's own final norm,
unembedding and soft-cap (`exact_logits`), so that the last block read through them *is* the model's output.

`exact_logits` is arithmetic over the model's own modules: used on the bridge's modules here, and inside an
nnsight trace on the model's own modules (on NDIF too, where it travels by value: `lens.remote.blocks`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lens.errors import LensError
from lens.models.bridge import bridge_forward, refuse_hazard
from lens.models.device import RELATIVE_TOLERANCE
from lens.models.model import LoadedModel
from lens.models.spot import require_agreement, spot_checks
from lens.tokens import encode_ids, prompt_ids

PROMPT = "The capital of Germany is"
"""The prompt the load check reads (the first of `lens check`'s)."""


def exact_logits(norm: Callable, unembed: Callable, resid: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """The exact lens's logits of residual vectors (..., d_model), given the model's final norm and unembedding."""
    logits = unembed(norm(resid))
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@torch.inference_mode()
def exactness(model: LoadedModel, prompt: str = PROMPT) -> float:
    """How far the exact lens at the last block is from the model's own output logits, relative to their
    scale: 0 up to float error when the lens is exact on this model, device and dtype. One forward pass through
    the bridge, spot-checked as every forward pass of a read is (`lens.models.spot`)."""
    sequence = prompt_ids(model.tokenizer, prompt)
    batch = encode_ids(model.tokenizer, [sequence], model.n_ctx)
    refuse_hazard(model, batch)
    reads = bridge_forward(model, batch)
    if spot_checks(model):  # a wrong kernel can turn up long after the load check (lens.models.spot)
        require_agreement(model, sequence)
    lens = exact_logits(model.bridge.ln_final, model.bridge.unembed, reads.resid[0, -1], model.softcap).float()
    output = reads.output_logits[0].float()
    return float((lens - output).abs().max() / output.abs().max().clamp_min(1e-12))


def require_exact(model: LoadedModel) -> None:
    """Refuse a model whose last block, read through the lens, is not its output (one line, what to do)."""
    relative = exactness(model)
    tolerance = RELATIVE_TOLERANCE[model.dtype]  # of max |output logit|, at the last block
    if not relative <= tolerance:
        dtype = str(model.dtype).removeprefix("torch.")
        raise LensError(
            f"the lens is not exact on {model.name} ({model.device}, {dtype}): its last block differs from the "
            f"output by {relative:.1e} of the logits' scale (tolerance {tolerance:.0e}); try --device cpu or "
            "--dtype float32"
        )
