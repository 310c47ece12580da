"""Fitting a tuned lens's translators to rows of block outputs: least squares toward the last block's output,
then Adam steps on the KL from the model's output distribution, and the exact KL that measures the result.

The KL steps are bounded, not full-vocabulary: a row's loss is the KL between the output and the lens over the
output's `TOP_K` most probable tokens plus one bucket for the rest (a coarse-graining, so never above the full
KL), with the lens's normaliser summed over the batch's top tokens exactly and over the rest of the vocabulary by
`TAIL_SAMPLES` tokens drawn uniformly (scaled up: an unbiased estimate of the tail's sum). The unembedding rows
are multiplied once per step for every block (one matmul, in bfloat16; the final norm, the softmax and the loss
in float32). The steps are taken in whitened coordinates (the least squares' own Cholesky factor), so one
learning rate suits every block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from lens.models.exact import exact_logits
from lens.models.model import LoadedModel

RIDGE = 1e-3
"""Ridge on the least squares, as a share of the Gram matrix's mean diagonal: keeps the solve well posed where a
residual direction barely varies over the rows."""
TOP_K = 32
"""Output tokens a row's KL keeps one by one; the rest of the vocabulary is one bucket."""
TAIL_SAMPLES = 1024
"""Tokens drawn per step, outside the batch's top tokens, to estimate the rest of the lens's normaliser."""
STEPS = 200
"""Adam steps on the bounded KL. In a trial with the corpus's regions, SmolLM2's mean KL to the output at block 22 on
the judged capitals' completions was 1.97 nats after 40 steps and 1.70 after 200 (2026-12-03); its fit (least squares
and steps) took 24 s with 40 and 115 s with 200, wall, on this 2-core CPU's two threads."""
LR = 3e-5
"""Adam's learning rate, in whitened coordinates scaled to the target's size."""
BATCH_ROWS = 128
"""Rows per step, drawn by weight."""
GROUP_BYTES = 256 * 2**20
"""Blocks are fitted a group at a time, each group's float32 block outputs at most this (at least one block): an
8B's least squares and KL steps over every block at once held 4 copies of 4.4 GB and did not fit in 24 GB."""


def groups(rows: int, n_blocks: int, d_model: int) -> list[range]:
    """The blocks (all but the last) in groups whose float32 block outputs over `rows` fit in `GROUP_BYTES`: one
    group for the embedded models (SmolLM2's 29 blocks of 1,760 rows are 117 MB), a block at a time for an 8B."""
    size = max(1, GROUP_BYTES // (rows * (d_model + 1) * 4))
    return [range(i, min(i + size, n_blocks)) for i in range(0, n_blocks, size)]


@dataclass(frozen=True)
class Rows:
    """Block outputs at the positions a lens is fitted on, and the model's output there."""

    resid: torch.Tensor
    """Every block's output, (rows, n_layers, d_model), in the model's dtype (a bfloat16 8B's are 2.2 GB, not 4.4)."""
    top_ids: torch.Tensor
    """The output's `TOP_K` most probable tokens, (rows, TOP_K)."""
    top_logp: torch.Tensor
    """Their log-probabilities, (rows, TOP_K), float32."""
    weight: torch.Tensor
    """Each row's weight, (rows,): what share of the fit it is."""


def top_tokens(logits: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """The output's k most probable tokens per row and their log-probabilities (float32)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return ids, values


@dataclass(frozen=True)
class LeastSquares:
    """The ridge least-squares maps [h, 1] -> y per block (y the last block's output), with what the KL steps
    reuse: the Cholesky factor of each block's weighted Gram matrix (ridge included) and y's RMS."""

    maps: torch.Tensor
    """(n_layers - 1, d_model + 1, d_model), float32: h' = maps[l]^T [h, 1]."""
    cholesky: torch.Tensor
    """(n_layers - 1, d_model + 1, d_model + 1), float32, lower triangular."""
    scale: float
    """The targets' RMS over the rows (by weight)."""


def least_squares(
    batches: Sequence[tuple[torch.Tensor, torch.Tensor | None]], ridge: float = RIDGE, blocks: range | None = None
) -> LeastSquares:
    """Per block (of `blocks`, default every block but the last), the weighted ridge least-squares affine map from
    its output to the last block's output, from batches of (block outputs (rows, n_layers, d_model), row weights
    (rows,) or None for 1). Only weighted sums of x x^T and x y^T are kept, in float64 on the CPU."""
    xx = xy = None
    total = square = 0.0
    for resid, weight in batches:
        rows, n, d = resid.shape
        picked = range(n - 1) if blocks is None else blocks
        y = resid[:, -1].float().cpu()
        w = torch.ones(rows) if weight is None else weight.float().cpu()
        if xx is None:
            xx = torch.zeros(len(picked), d + 1, d + 1, dtype=torch.float64)
            xy = torch.zeros(len(picked), d + 1, d, dtype=torch.float64)
        h = resid[:, picked.start : picked.stop].float().cpu()
        x = torch.cat([h, torch.ones(rows, len(picked), 1)], dim=-1).transpose(0, 1)
        del h
        xw = x * w[None, :, None]
        xx += (xw.transpose(1, 2) @ x).double()
        xy += (xw.transpose(1, 2) @ y).double()
        total += float(w.sum())
        square += float((w * y.pow(2).mean(-1)).sum())
    if xx is None or total <= 0:
        raise ValueError("no block outputs to fit translators to")
    xx, xy = xx / total, xy / total
    d = xy.shape[-1]
    penalty = ridge * xx.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(d + 1, dtype=xx.dtype)
    identity = torch.eye(d + 1, d, dtype=xx.dtype)  # h' = h: the logit lens, tuned-lens's start
    cholesky = torch.linalg.cholesky(xx + penalty)
    maps = torch.cholesky_solve(xy + penalty @ identity, cholesky)
    return LeastSquares(maps.float(), cholesky.float(), math.sqrt(square / total))


def translators(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps [h, 1] -> h' as tuned-lens's translators: h + A h + b = M^T [h, 1], so A = M[:d]^T - I, b = M[d]."""
    d = maps.shape[-1]
    weight = maps[:, :d].transpose(1, 2) - torch.eye(d, dtype=maps.dtype, device=maps.device)
    return weight.float().contiguous(), maps[:, d].float().contiguous()


def fit_translators(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tuned-lens translators (weight (n_layers - 1, d, d), bias (n_layers - 1, d)) fitted by least squares alone
    to batches of block outputs (rows, n_layers, d_model), every row weighted alike."""
    return translators(least_squares([(resid, None) for resid in batches]).maps)


def refine(
    model: LoadedModel,
    rows: Rows,
    start: LeastSquares,
    steps: int = STEPS,
    lr: float = LR,
    batch: int = BATCH_ROWS,
    seed: int = 0,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
    blocks: range | None = None,
) -> torch.Tensor:
    """The least-squares maps of `blocks` (default every block but the last; `start` fitted on the same) after
    `steps` Adam steps on the bounded KL (module docstring): the new maps, (len(blocks), d_model + 1, d_model). Each
    block's loss moves only its own map, and every call draws the same rows and tail tokens (one seed), so blocks
    refined a few at a time give the maps all of them at once would."""
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    n_blocks = start.maps.shape[0]
    picked = range(n_blocks) if blocks is None else blocks
    if len(picked) != n_blocks:
        raise ValueError(f"refining {len(picked)} blocks from a start fitted on {n_blocks}")
    cholesky = start.cholesky.to(device)
    h = rows.resid[:, picked.start : picked.stop].float()
    x = torch.cat([h, torch.ones(len(rows.weight), n_blocks, 1)], dim=-1)
    del h
    whitened = torch.linalg.solve_triangular(
        cholesky, x.to(device).transpose(0, 1).transpose(1, 2), upper=False
    ).transpose(1, 2)  # (blocks, rows, d + 1), unit covariance
    del x
    maps = torch.nn.Parameter(cholesky.transpose(1, 2) @ start.maps.to(device) / start.scale)
    optimizer = torch.optim.Adam([maps], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # to 0: no late wander
    unembed, bias = unembedding(model)
    top_ids, top_logp = rows.top_ids.to(device), rows.top_logp.float().to(device)
    draw = (rows.weight / rows.weight.sum()).float()
    for _ in progress(range(steps)):
        pick = torch.multinomial(draw, batch, replacement=True, generator=generator).to(device)
        moved = torch.einsum("lre,led->rld", whitened[:, pick], maps)
        loss = bounded_kl(model, moved, top_ids[pick], top_logp[pick], unembed, bias, generator).mean(0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return (torch.linalg.solve_triangular(cholesky.transpose(1, 2), maps.detach(), upper=True) * start.scale).cpu()


def unembedding(model: LoadedModel) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The unembedding's rows (vocab, d_model), in the model's dtype (no float32 copy: an 8B's is 2.1 GB; the
    rows a step uses are gathered, then multiplied in bfloat16), and its bias (vocab,) or None, float32."""
    head = model.hf_model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    return head.weight.detach(), None if bias is None else bias.detach().float()


def bounded_kl(
    model: LoadedModel,
    moved: torch.Tensor,
    top_ids: torch.Tensor,
    top_logp: torch.Tensor,
    unembed: torch.Tensor,
    bias: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per row and block, the KL from the output to the lens over the output's top tokens plus one bucket for the
    rest, the lens's normaliser exact over the rows' top tokens and estimated over the rest by uniform draws.

    Args:
        moved: translated block outputs, (rows, blocks, d_model), any scale (the final norm divides it out).
        top_ids, top_logp: the output's top tokens per row and their log-probabilities, (rows, k).
    Returns:
        (rows, blocks), in nats."""
    vocab = unembed.shape[0]
    columns, position = torch.unique(top_ids, return_inverse=True)
    outside = torch.ones(vocab, dtype=torch.bool, device=unembed.device)
    outside[columns] = False
    rest = outside.nonzero().squeeze(1)
    drawn = rest[torch.randint(len(rest), (TAIL_SAMPLES,), generator=generator).to(rest.device)] if len(rest) else rest
    ids = torch.cat([columns, drawn])
    normed = model.bridge.ln_final(moved.to(model.dtype)).float()
    logits = (normed.bfloat16() @ unembed[ids].bfloat16().T).float()
    if bias is not None:
        logits = logits + bias[ids]
    if model.softcap:
        logits = torch.tanh(logits / model.softcap) * model.softcap
    if len(drawn):  # each drawn token stands for len(rest) / TAIL_SAMPLES of the tail
        logits[..., len(columns) :] += math.log(len(rest) / len(drawn))
    log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    blocks = moved.shape[1]
    lens_top = logits[..., : len(columns)].gather(-1, position[:, None, :].expand(-1, blocks, -1)) - log_norm
    out_tail = torch.log1p(-top_logp.exp().sum(-1).clamp(max=1 - 1e-6))
    lens_tail = torch.log1p(-lens_top.exp().sum(-1).clamp(max=1 - 1e-6))
    return (top_logp.exp()[:, None] * (top_logp[:, None] - lens_top)).sum(-1) + out_tail.exp()[:, None] * (
        out_tail[:, None] - lens_tail
    )


def rows_kl(
    model: LoadedModel,
    moved: Callable[[torch.Tensor], torch.Tensor],
    resid: torch.Tensor,
    output_logp: torch.Tensor,
    chunk: int = 8,
) -> torch.Tensor:
    """Mean exact KL(output || lens) per block over rows, full vocabulary, float32: `moved` turns block outputs
    (rows, n_layers, d_model) into what the exact lens reads (the identity: the logit lens), `output_logp` is the
    output's log-softmax (rows, vocab). (n_layers,), in nats."""
    total = torch.zeros(resid.shape[1], dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, len(resid), chunk):
            h = moved(resid[start : start + chunk].to(model.device).float()).to(model.dtype)
            logq = torch.log_softmax(
                exact_logits(model.bridge.ln_final, model.bridge.unembed, h, model.softcap).float(), dim=-1
            )
            logp = output_logp[start : start + chunk].to(model.device).float()[:, None]
            total += (logp.exp() * (logp - logq)).sum(-1).sum(0).double().cpu()
    return total / max(len(resid), 1)
