"""Activation patching, the lens's causal counterpart: put the clean run's residual stream at one
(layer, position) into a corrupted run and measure how much of the clean answer's probability returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.backends import block_hooks
from lens.errors import LensError
from lens.model import LoadedModel
from lens.tokens import answer_token, encode


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
    """(n_layers, patched positions): (p_patched - p_corrupt) / (p_clean - p_corrupt) for the clean answer."""
    positions: tuple[int, ...] = ()
    """The prompt positions patched, in the order of `restored`'s columns (every position by default)."""

    def at(self, position: int) -> list[float]:
        """The restored share over blocks when patching one prompt position (negative: from the end)."""
        column = self.positions.index(position % len(self.tokens))
        return [row[column] for row in self.restored]


@torch.inference_mode()
def patch_residuals(
    model: LoadedModel, clean: str, corrupt: str, answer: str, positions: Sequence[int] | None = None
) -> Patching:
    """Patch every block output of `clean` at each of `positions` (default: all) into `corrupt`, all in
    one batched forward pass.

    Row layer*len(positions) + k of the batch gets the clean residual at that block and the k-th position;
    each block's hook touches only its own rows. The prompts must tokenize to the same length.
    """
    clean_batch = encode(model.tokenizer, [clean], model.n_ctx)
    corrupt_batch = encode(model.tokenizer, [corrupt], model.n_ctx)
    n_pos = clean_batch["input_ids"].shape[1]
    if corrupt_batch["input_ids"].shape[1] != n_pos:
        raise LensError(f"{clean!r} and {corrupt!r} tokenize to different lengths: patching needs equal ones")
    followed = answer_token(model.tokenizer, clean, answer)
    if followed.lead:
        raise LensError(f"{answer!r} starts with a whitespace token: patching follows answers that do not")
    target = followed.token_id
    names = block_hooks(model)
    device = model.device

    def p_answer(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits[:, -1].float(), dim=-1)[:, target]

    clean_logits, cache = model.bridge.run_with_cache(
        clean_batch["input_ids"].to(device), names_filter=names, logits_to_keep=1
    )
    p_clean = float(p_answer(clean_logits)[0])
    p_corrupt = float(p_answer(model.bridge(corrupt_batch["input_ids"].to(device), logits_to_keep=1))[0])
    chosen = sorted({p % n_pos for p in positions}) if positions is not None else list(range(n_pos))
    where = torch.tensor(chosen)
    k = len(chosen)
    rows = model.n_layers * k

    def hook_for(layer: int):
        clean_resid = cache[names[layer]][0]  # (positions, d_model)
        first = layer * k

        def patch(resid: torch.Tensor, hook) -> torch.Tensor:
            resid[first + torch.arange(k), where] = clean_resid[where].to(resid.dtype)
            return resid

        return patch

    ids = corrupt_batch["input_ids"].to(device).expand(rows, -1)
    patched = model.bridge.run_with_hooks(
        ids, fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(model.n_layers)],
        logits_to_keep=1,
    )
    gap = p_clean - p_corrupt
    restored = ((p_answer(patched) - p_corrupt) / gap if gap else torch.zeros(rows)).reshape(model.n_layers, k)
    decode = model.tokenizer.decode
    return Patching(
        model=model.name, clean=clean, corrupt=corrupt, answer=answer,
        tokens=tuple(decode([i]) for i in clean_batch["input_ids"][0].tolist()),
        p_clean=p_clean, p_corrupt=p_corrupt,
        restored=tuple(tuple(row) for row in restored.cpu().tolist()), positions=tuple(chosen),
    )
