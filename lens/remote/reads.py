"""The reads a model on NDIF answers its own way, registered for `RemoteModel` on the generic functions of
`lens.reads` and `lens.lenses.registry`: the lens reduced inside its jobs (`collect`), its grid, continuation and
patching run as jobs, and what it cannot give refused in one line (`NotRemote`: the findings skip with it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lens.errors import LensError, NotRemote
from lens.lenses.registry import KINDS, Say, lens_for, lens_kind
from lens.reads.attention import AttentionFromLast, attention_from_last
from lens.reads.generate import generated
from lens.reads.grid import grid_cells
from lens.reads.patching import Case, patched_rows
from lens.reads.records import Reduced, Residuals, Wanted
from lens.reads.trace import followed_for, residuals_of
from lens.remote.model import RemoteModel

IN_JOBS = tuple(kind.name for kind in KINDS if kind.in_jobs)
"""The lenses a remote job reduces where the model runs (`lens.reads.intrace`): a tuned or Jacobian lens's matrices
stay here."""
NOT_ON_NDIF = (
    "attention patterns are not read on NDIF: it runs models with fused attention (sdpa), which never "
    "forms them, and recomputing them from queries and keys needs each architecture's rotary embedding"
)
"""Why a remote model's attention is refused."""


@residuals_of.register(RemoteModel)
def _reduced(
    model: RemoteModel,
    prompts: tuple[str, ...],
    texts: tuple[str, ...],
    sequences: list[list[int]],
    wanted: Wanted,
    backend: str,
    batch_size: int,
) -> Residuals:
    """`collect` on NDIF: its batches' lens reduced there, one job per batch, for what `wanted` says the reads
    will ask."""
    if backend != "nnsight":
        raise LensError(f"{model.name} runs remotely, through nnsight: use backend 'nnsight', not {backend!r}")
    n = len(prompts)
    answers = list(wanted.answers) if wanted.answers is not None else [None] * n
    ids = {}
    unknown = [name for name in wanted.lenses if name not in IN_JOBS]
    if unknown:
        raise LensError(
            f"{model.name} runs remotely, where only the {' and '.join(IN_JOBS)} lenses are read, "
            f"not {', '.join(unknown)}: run it here to read them"
        )
    for name, watch in wanted.lenses.items():
        watch = list(watch) if watch is not None else [()] * n
        ids[name] = tuple(
            tuple(followed_for(model, prompt, text, a, ws).ids())
            for prompt, text, a, ws in zip(prompts, texts, answers, watch)
        )
    output_ids = tuple(tuple(row) for row in wanted.output_ids) if wanted.output_ids is not None else ((),) * n
    if not 1 <= wanted.top_k:
        raise LensError("--top-k must be at least 1")
    reduced = model.reduce_lens(sequences, ids, output_ids, wanted.top_k, tuple(wanted.temperatures), batch_size)
    return Residuals(
        prompts,
        texts,
        None,
        None,
        "nnsight",
        Reduced(reduced, ids, output_ids, wanted.top_k, tuple(wanted.temperatures)),
    )


@grid_cells.register(RemoteModel)
def _grid(model: RemoteModel, prompt: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid's cells computed on NDIF, only each cell's top token and its probability sent back."""
    cells = model.grid(prompt)
    return cells["ids"], cells["p"]


@generated.register(RemoteModel)
def _generated(
    model: RemoteModel,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    answers: Sequence[Sequence[str]] | None,
) -> tuple[Any, list[list[int]], list[list[float]]]:
    """The model's own continuation generated on NDIF, one job per batch, in full: `continue_greedy` cuts each
    where it is decided."""
    rows, margins = model.continuations(prompts, max_new_tokens, batch_size)
    return model.generation_config, rows, margins


@patched_rows.register(RemoteModel)
def _patched(model: RemoteModel, cases: Sequence[Case], desc: str = "") -> list[torch.Tensor]:
    """Patching on NDIF, a few cases per session job."""
    return model.patch(cases)


@attention_from_last.register(RemoteModel)
def _attention(model: RemoteModel, prompt: str) -> AttentionFromLast:
    raise NotRemote(NOT_ON_NDIF)


@lens_for.register(RemoteModel)
def _lens(model: RemoteModel, name: str, say: Say | None = None) -> Any:
    """Only the lenses its jobs reduce there (`IN_JOBS`)."""
    if not lens_kind(name).in_jobs:
        raise NotRemote(
            f"the {name} lens is not read on NDIF: its matrices are applied here, and a job there runs "
            "the model's own modules only"
        )
    return lens_kind(name).for_run(model, say)
