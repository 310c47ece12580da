"""Activation patching, the lens's causal counterpart: put the clean run's residual stream at one
(layer, position) into a corrupted run and measure how much of the clean answer's probability returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lens.errors import LensError
from lens.loader import LoadedModel
from lens.tokens import answer_token, encode
from lens.trace import block_hooks


@dataclass(frozen=True)
class Patching:
    """Restored probability for every (layer, position)."""

    model: str
    clean: str
    corrupt: str
    answer: str
    tokens: tuple[str, ...]
    p_clean: float
    p_corrupt: float
    restored: tuple[tuple[float, ...], ...]
    """(n_layers, positions): (p_patched - p_corrupt) / (p_clean - p_corrupt) for the clean answer."""


@torch.inference_mode()
def patch_residuals(model: LoadedModel, clean: str, corrupt: str, answer: str) -> Patching:
    """Patch every (block output, position) of `clean` into `corrupt`, all in one batched forward pass.

    Row layer*positions + position of the batch gets the clean residual at that block and position;
    each block's hook touches only its own rows. The prompts must tokenize to the same length.
    """
    clean_batch = encode(model.tokenizer, [clean], model.n_ctx)
    corrupt_batch = encode(model.tokenizer, [corrupt], model.n_ctx)
    n_pos = clean_batch["input_ids"].shape[1]
    if corrupt_batch["input_ids"].shape[1] != n_pos:
        raise LensError(f"{clean!r} and {corrupt!r} tokenize to different lengths: patching needs equal ones")
    target = answer_token(model.tokenizer, clean, answer).token_id
    names = block_hooks(model)
    device = model.device

    def p_answer(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits[:, -1].float(), dim=-1)[:, target]

    clean_logits, cache = model.bridge.run_with_cache(
        clean_batch["input_ids"].to(device), names_filter=names, logits_to_keep=1
    )
    p_clean = float(p_answer(clean_logits)[0])
    p_corrupt = float(p_answer(model.bridge(corrupt_batch["input_ids"].to(device), logits_to_keep=1))[0])
    rows = model.n_layers * n_pos
    positions = torch.arange(n_pos)

    def hook_for(layer: int):
        clean_resid = cache[names[layer]][0]  # (positions, d_model)
        first = layer * n_pos

        def patch(resid: torch.Tensor, hook) -> torch.Tensor:
            resid[first + positions, positions] = clean_resid[positions].to(resid.dtype)
            return resid

        return patch

    ids = corrupt_batch["input_ids"].to(device).expand(rows, -1)
    patched = model.bridge.run_with_hooks(
        ids, fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(model.n_layers)],
        logits_to_keep=1,
    )
    gap = p_clean - p_corrupt
    restored = ((p_answer(patched) - p_corrupt) / gap if gap else torch.zeros(rows)).reshape(model.n_layers, n_pos)
    decode = model.tokenizer.decode
    return Patching(
        model=model.name, clean=clean, corrupt=corrupt, answer=answer,
        tokens=tuple(decode([i]) for i in clean_batch["input_ids"][0].tolist()),
        p_clean=p_clean, p_corrupt=p_corrupt,
        restored=tuple(tuple(row) for row in restored.cpu().tolist()),
    )
