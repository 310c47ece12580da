"""Activation patching, the lens's causal counterpart: put the clean run's residual stream at one
(layer, position) into a corrupted run and measure how much of the clean answer's probability returns."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.errors import LensError
from lens.models.bridge import block_hooks
from lens.models.model import LoadedModel, Model
from lens.progress import bar
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


@dataclass(frozen=True)
class Case:
    """One patching to run: the prompts as token ids, the answer's token, and the positions patched."""

    clean: str
    corrupt: str
    answer: str
    clean_ids: torch.Tensor
    """(1, positions)."""
    corrupt_ids: torch.Tensor
    target: int
    """The followed token of the clean answer."""
    positions: tuple[int, ...]
    """The prompt positions patched, ascending (every one by default)."""


@torch.inference_mode()
def patch_residuals(
    model: Model, clean: str, corrupt: str, answer: str, positions: Sequence[int] | None = None
) -> Patching:
    """Patch every block output of `clean` at each of `positions` (default: all) into `corrupt`, all in
    one batched forward pass.

    Row layer*len(positions) + k of the batch gets the clean residual at that block and the k-th position;
    each block's hook touches only its own rows. The prompts must tokenize to the same length.
    """
    return patch_many(model, [(clean, corrupt, answer, positions)])[0]


@torch.inference_mode()
def patch_many(
    model: Model, cases: Sequence[tuple[str, str, str, Sequence[int] | None]], desc: str = ""
) -> list[Patching]:
    """`patch_residuals` for each (clean, corrupt, answer, positions); a model on NDIF's there, one forward per
    case where the clean prompt rides in the same batch as its corrupted rows, a few cases per session job
    (`lens.remote`), only p(answer) per row coming back."""
    prepared = [case_of(model, *case) for case in cases]
    return [_patching(model, case, p) for case, p in zip(prepared, patched_rows(model, prepared, desc))]


@functools.singledispatch
def patched_rows(model: Model, cases: Sequence[Case], desc: str = "") -> list[torch.Tensor]:
    """Per case, p(answer) of the clean run, the corrupted run, then each patched row (block-major), here (a model
    on NDIF patches there: `lens.remote.reads`)."""
    return [_patched_rows(model, case) for case in bar(cases, desc=desc, unit="fact", total=len(cases))]


def case_of(model: Model, clean: str, corrupt: str, answer: str, positions: Sequence[int] | None) -> Case:
    """A patching's prompts tokenized, its answer's token and positions, checked."""
    clean_batch = encode(model.tokenizer, [clean], model.n_ctx)
    corrupt_batch = encode(model.tokenizer, [corrupt], model.n_ctx)
    n_pos = clean_batch["input_ids"].shape[1]
    if corrupt_batch["input_ids"].shape[1] != n_pos:
        raise LensError(f"{clean!r} and {corrupt!r} tokenize to different lengths: patching needs equal ones")
    followed = answer_token(model.tokenizer, clean, answer)
    if followed.lead:
        raise LensError(f"{answer!r} starts with a whitespace token: patching follows answers that do not")
    chosen = sorted({p % n_pos for p in positions}) if positions is not None else list(range(n_pos))
    return Case(
        clean, corrupt, answer, clean_batch["input_ids"], corrupt_batch["input_ids"], followed.token_id, tuple(chosen)
    )


def _patched_rows(model: LoadedModel, case: Case) -> torch.Tensor:
    """p(answer) of the clean run, the corrupted run, then each patched row (block-major), here on the bridge."""
    names = block_hooks(model)
    device = model.device

    def p_answer(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits[:, -1].float(), dim=-1)[:, case.target]

    clean_logits, cache = model.bridge.run_with_cache(case.clean_ids.to(device), names_filter=names, logits_to_keep=1)
    corrupt_p = p_answer(model.bridge(case.corrupt_ids.to(device), logits_to_keep=1))
    where = torch.tensor(case.positions)
    k = len(case.positions)
    rows = model.n_layers * k

    def hook_for(layer: int):
        clean_resid = cache[names[layer]][0]  # (positions, d_model)
        first = layer * k

        def patch(resid: torch.Tensor, hook) -> torch.Tensor:
            resid[first + torch.arange(k), where] = clean_resid[where].to(resid.dtype)
            return resid

        return patch

    ids = case.corrupt_ids.to(device).expand(rows, -1)
    patched = model.bridge.run_with_hooks(
        ids,
        fwd_hooks=[(names[layer], hook_for(layer)) for layer in range(model.n_layers)],
        logits_to_keep=1,
    )
    return torch.cat([p_answer(clean_logits), corrupt_p, p_answer(patched)]).cpu()


def _patching(model: Model, case: Case, p: torch.Tensor) -> Patching:
    """The restored shares from p(answer) of the clean run, the corrupted run and each patched row."""
    p = p.float()
    p_clean, p_corrupt = float(p[0]), float(p[1])
    gap = p_clean - p_corrupt
    k = len(case.positions)
    restored = ((p[2:] - p_corrupt) / gap if gap else torch.zeros(len(p) - 2)).reshape(model.n_layers, k)
    decode = model.tokenizer.decode
    return Patching(
        model=model.name,
        clean=case.clean,
        corrupt=case.corrupt,
        answer=case.answer,
        tokens=tuple(decode([i]) for i in case.clean_ids[0].tolist()),
        p_clean=p_clean,
        p_corrupt=p_corrupt,
        restored=tuple(tuple(row) for row in restored.tolist()),
        positions=case.positions,
    )
