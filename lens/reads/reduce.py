"""What the claims read of a lens, reduced where the logits are: the one reduction of local reads and remote jobs.

Per prompt and block, at the read position: the followed tokens' logits and exact ranks, the top-k ids and
logits, and per temperature the log-normaliser, the entropy and the KL divergence from the model's output; the
output's own; the largest difference between the last block and the output. Probabilities follow from a logit
and its log-normaliser (`p = exp(z / T - lse)`), so nothing of the vocabulary's size leaves the function.

`lens.reads.trace.read` calls `reduce` on the logits of the model here; on NDIF the same functions run inside the job
(`lens.remote`), and only their result travels back, so the figures of the two paths agree by construction.
This module travels with a remote request by value (NDIF has no `lens` package, and its sandbox imports torch
but not dataclasses), so it holds plain functions over tensors and imports nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

MAX_LENS_ELEMENTS = 1 << 25
"""Rows x vocab of one lens's logits reduced at once (128 MiB of float32), here and in a job: bounds the memory,
and the same chunks on both paths make their figures the same bit for bit (a float32 sum over the vocabulary
rounds by how its batch is laid out). Each chunk reads the whole unembedding matrix, so a small chunk is
memory-bound. Measured on Gemma 3 (262,144 tokens; the exact lens over 64 prompts, 2 threads): 32 MiB chunks
(one prompt) 10.3 s, 64 MiB 6.5 s, 128 MiB 5.7 s, 256 MiB 5.7 s with 0.4 GB more peak memory."""
BATCH = 16
"""Prompts per forward pass (`lens.reads.trace.collect`) and per remote job: chunks never cross a batch."""
RANK_DTYPE = torch.int32
"""Ranks and token ids as they travel: any vocabulary in use fits (Gemma 3: 262,144 tokens)."""
RANK_ROWS = 32
"""Rows ranked at once by `searchsorted`: one prompt's blocks (measured: a whole chunk at once is 10% slower)."""
LOG_P_FLOOR = -80.0
"""A logit this far (at the temperature) below its row's largest is taken as that far below, e^-80 = 1.8e-35 (a
normal float32), in the sums of e^y: exp of lower values takes a slow path on the CPU (measured: 5x on the raw
lens's logits, thousands of nats wide), and it moves an entropy or a log-normaliser by under 1e-25 nats (262,144
tokens at y = -5,000). The logits themselves are not floored."""
ROWS_AT_ONCE = {"cpu": 1}
"""Rows of a prompt's blocks whose log-normaliser, entropy and KL are taken at once, by device (others: all of a
prompt's blocks): on the CPU one row stays in cache; on a GPU a kernel launch a row would cost more than it saves."""
COMPARE_ROWS = 2
"""Rows ranked at once by comparison, so a row stays in cache while each value is compared with it."""
COMPARE_UP_TO = 16
"""Up to this many values per row, comparing every logit with each value beats `searchsorted` (measured on the
CPU over 262,144 logits a row: 1 value 0.06 s against 0.61 s, 12 values 0.57 against 1.22, 17 about even, 30
twice as slow)."""


def reduce(
    logits: torch.Tensor,
    output: torch.Tensor,
    ids: torch.Tensor,
    top_k: int,
    temperatures: Sequence[float],
    output_ids: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The reduced lens of a chunk of prompts, in float32 whatever the autocast (NDIF runs jobs under bfloat16's).

    Args:
        logits: the lens's logits, (prompts, n_layers, vocab).
        output: the model's output logits, (prompts, vocab), on any device (brought to the logits').
        ids: per prompt the token ids followed, (prompts, followed); a row shorter than others repeats an id.
        top_k: how many top tokens per block are kept.
        temperatures: the temperatures the entropy, KL and log-normaliser are kept at.
        output_ids: per prompt more ids whose output logit is kept, (prompts, extra), or None.

    Returns: tensors keyed by name; `T` is the number of temperatures, `F` of followed ids:
        ids_logits, ids_ranks (prompts, n_layers, F); out_ids_logits, out_ids_ranks (prompts, F);
        top_ids, top_logits (prompts, n_layers, top_k); out_top_ids, out_top_logits (prompts, top_k);
        lse, entropy, kl (prompts, n_layers, T); out_lse, out_entropy (prompts, T);
        final_diff, out_max_abs (prompts,); out_extra_logits (prompts, extra) with `output_ids`.
    """
    if torch.amp.is_autocast_available(logits.device.type):
        with torch.autocast(logits.device.type, enabled=False):
            return _reduce(logits, output, ids, top_k, temperatures, output_ids)
    return _reduce(logits, output, ids, top_k, temperatures, output_ids)  # a device without autocast (meta)


def _reduce(
    logits: torch.Tensor,
    output: torch.Tensor,
    ids: torch.Tensor,
    top_k: int,
    temperatures: Sequence[float],
    output_ids: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """`reduce`, under whatever autocast the caller left, on the logits' device (a model spread over GPUs puts the
    lens's logits where the unembedding is, the output maybe elsewhere)."""
    z, out = logits.detach().float(), output.detach().to(logits.device).float()  # figures: never differentiated
    b, n_layers, vocab = z.shape
    ids = ids.to(z.device, torch.long)
    top_z, top_i = z.topk(top_k, dim=-1)
    out_top_z, out_top_i = out.topk(top_k, dim=-1)
    ids_z = z.gather(-1, ids[:, None, :].expand(b, n_layers, ids.shape[1]))
    out_ids_z = out.gather(-1, ids)
    reduced = {
        "ids_logits": ids_z,
        "ids_ranks": ranks_of(z.reshape(b * n_layers, vocab), ids_z.reshape(b * n_layers, -1))
        .reshape(ids_z.shape)
        .to(RANK_DTYPE),
        "out_ids_logits": out_ids_z,
        "out_ids_ranks": ranks_of(out, out_ids_z).to(RANK_DTYPE),
        "top_ids": top_i.to(RANK_DTYPE),
        "top_logits": top_z,
        "out_top_ids": out_top_i.to(RANK_DTYPE),
        "out_top_logits": out_top_z,
        "final_diff": (z[:, -1] - out).abs().amax(-1),
        "out_max_abs": out.abs().amax(-1),
    }
    if output_ids is not None:
        reduced["out_extra_logits"] = out.gather(-1, output_ids.to(out.device, torch.long))
    per_temperature = [_at_temperature(z, out, top_z, out_top_z, out_top_i, t) for t in temperatures]
    for k, name in enumerate(("lse", "entropy", "kl", "out_lse", "out_entropy")):
        reduced[name] = torch.stack([figures[k] for figures in per_temperature], dim=-1)
    return reduced


def _at_temperature(
    z: torch.Tensor,
    out: torch.Tensor,
    top_z: torch.Tensor,
    out_top_z: torch.Tensor,
    out_top_i: torch.Tensor,
    t: float,
) -> tuple[torch.Tensor, ...]:
    """At one temperature: each block's log-normaliser, entropy and KL(output || block), the output's own two.

    From each row's logits shifted by their largest, y = (z - max) / T <= 0. With s = sum e^y, log p = y - log s,
    so the log-normaliser is max / T + log s, the entropy log s - sum(e^y y) / s and the KL from the output
    -H(q) - sum(q y) + log s: nothing of the vocabulary's size is written but y and e^y, and nothing large cancels.
    On the CPU a row at a time, so that it stays in cache through its passes; elsewhere a prompt's blocks at once
    (`ROWS_AT_ONCE`). Measured on the CPU, one thread, on Gemma 3's 126 rows of 262,144 logits (one chunk): 0.1 s,
    against 0.22 s for a log-softmax and the sums each over the whole chunk; and nearer float64's figures
    (entropy within 1e-6 nats, against 2e-4). The output's figures are taken in float64 (one row a prompt), its
    log-normaliser read off its top token (`z_top / T - log q_top`, with log q_top near 0)."""
    wide = out.to("cpu" if out.device.type == "mps" else out.device, torch.float64)  # MPS has no float64
    logq = torch.log_softmax(wide / t, dim=-1)  # a row a prompt: float64 costs nothing here
    q = logq.exp()
    out_entropy = (-(q * logq).sum(-1)).float().to(z.device)
    out_lse = (out_top_z[:, 0].to(wide.device) / t - logq.gather(-1, out_top_i[:, :1].to(wide.device))[:, 0]).float()
    q, out_lse = q.float().to(z.device), out_lse.to(z.device)
    b, n_layers, vocab = z.shape
    step = min(ROWS_AT_ONCE.get(z.device.type, n_layers), n_layers)
    tops = top_z[..., 0]  # the top-k's first is the row's largest
    lse, entropy, kl = (torch.empty(b, n_layers, device=z.device) for _ in range(3))
    y, e = torch.empty(step, vocab, device=z.device), torch.empty(step, vocab, device=z.device)
    for prompt in range(b):
        for start in range(0, n_layers, step):
            stop = min(start + step, n_layers)
            yb, eb, top = y[: stop - start], e[: stop - start], tops[prompt, start:stop]
            torch.sub(z[prompt, start:stop], top[:, None], out=yb)
            if t != 1:
                yb.div_(t)
            torch.clamp(yb, min=LOG_P_FLOOR, out=eb).exp_()
            sum_e = eb.sum(-1)
            log_s = sum_e.log()
            lse[prompt, start:stop] = top / t + log_s
            # products summed by torch's pairwise sum: nearer float64 than a BLAS dot over 262,144 terms (measured)
            entropy[prompt, start:stop] = log_s - eb.mul_(yb).sum(-1) / sum_e
            kl[prompt, start:stop] = log_s - torch.mul(yb, q[prompt], out=eb).sum(-1)
    kl -= out_entropy[:, None]
    return lse, entropy, kl.clamp_min(0.0), out_lse, out_entropy


def ranks_of(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """1 + how many logits of each row exceed each of the row's `values`: (rows, vocab), (rows, k) -> (rows, k).

    Ties count as not above; a value repeated gets the same rank. Ranks come from the logits themselves, not
    from log-probabilities, whose rounding reorders near-ties deep in the vocabulary (rank 10375 vs 10374 at
    another temperature). A few values per row: each compared with every logit; more: one pass over the
    vocabulary, each logit finding how many of its row's values lie strictly below it (searchsorted) and
    counting those per slot (`COMPARE_UP_TO`). On the CPU, numpy counts them (`_ranks_here`)."""
    if logits.device.type == "cpu" and values.device.type == "cpu" and values.shape[-1]:
        return _ranks_here(logits, values)
    return _ranks_on_device(logits, values)


def _ranks_on_device(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`ranks_of` by torch, on whatever device the logits are."""
    ranks = torch.empty(values.shape, dtype=torch.long, device=values.device)
    if values.shape[-1] == 0:
        return ranks
    if values.shape[-1] <= COMPARE_UP_TO:
        for start in range(0, logits.shape[0], COMPARE_ROWS):
            rows, row_values = logits[start : start + COMPARE_ROWS], values[start : start + COMPARE_ROWS]
            ranks[start : start + COMPARE_ROWS] = (
                torch.stack([(rows > row_values[:, k : k + 1]).sum(-1) for k in range(row_values.shape[-1])], dim=-1)
                + 1
            )
        return ranks
    for start in range(0, logits.shape[0], RANK_ROWS):
        rows, row_values = logits[start : start + RANK_ROWS], values[start : start + RANK_ROWS]
        ordered, order = row_values.sort(dim=-1)
        below = torch.searchsorted(ordered.contiguous(), rows.contiguous())
        counts = torch.zeros(rows.shape[0], row_values.shape[-1] + 1, dtype=torch.long, device=rows.device)
        counts.scatter_add_(1, below, torch.ones_like(below))
        exceed = counts.flip(1).cumsum(1).flip(1)[:, 1:]  # exceed[k]: logits above the k-th smallest value
        ranks[start : start + RANK_ROWS] = torch.empty_like(exceed).scatter_(1, order, exceed + 1)
    return ranks


def _ranks_here(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`ranks_of` on the CPU: numpy's count of a comparison, a row and a value at a time (the row stays in cache).
    Measured on one thread, 15 values a row: Gemma 3's 126 rows of 262,144 logits 0.047 s against torch's 0.43 s
    (its sum of a comparison widens every element to int64); SmolLM2's 480 rows of 49,152 0.037 against 0.24 s.
    numpy is imported here only: a remote job ranks on the model's device, in a sandbox that may not have it."""
    import numpy as np

    z, v = logits.detach().contiguous().numpy(), values.detach().numpy()
    counts = np.empty(v.shape, dtype=np.int64)
    for r in range(z.shape[0]):
        row = z[r]
        for k in range(v.shape[1]):
            counts[r, k] = np.count_nonzero(row > v[r, k])
    return torch.from_numpy(counts + 1)


def chunks(
    n: int, n_layers: int, vocab: int, max_elements: int = MAX_LENS_ELEMENTS, batch: int = BATCH
) -> list[tuple[int, int]]:
    """(start, stop) of the prompts reduced together: as many as keep one lens's logits within `max_elements`,
    never across a batch of `batch` prompts (so a job of one batch is chunked as the same prompts are here)."""
    step = max(1, min(batch, max_elements // (n_layers * vocab)))
    return [
        (start, min(first + batch, n, start + step))
        for first in range(0, n, batch)
        for start in range(first, min(first + batch, n), step)
    ]


def reduce_lenses(
    lenses: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    resid: torch.Tensor,
    output: torch.Tensor,
    ids: dict[str, torch.Tensor],
    top_k: int,
    temperatures: Sequence[float],
    output_ids: torch.Tensor | None,
) -> dict[str, dict[str, torch.Tensor]]:
    """`reduce` for each lens (name -> residual stream (rows, d_model) to logits) over a batch's block outputs
    (prompts, n_layers, d_model), in the chunks `lens.reads.trace.read` takes (`chunks`). What a remote job runs where
    the model is; the output ids go with the first lens."""
    b, n_layers, d = resid.shape
    vocab = output.shape[-1]
    parts: dict[str, list[dict[str, torch.Tensor]]] = {name: [] for name in lenses}
    first = next(iter(lenses), None)
    for start, stop in chunks(b, n_layers, vocab):
        rows = resid[start:stop].reshape((stop - start) * n_layers, d)
        for name, logits_of in lenses.items():
            logits = logits_of(rows).reshape(stop - start, n_layers, vocab)
            extra = output_ids[start:stop] if output_ids is not None and name == first else None
            parts[name].append(reduce(logits, output[start:stop], ids[name][start:stop], top_k, temperatures, extra))
    return {
        name: {key: torch.cat([part[key] for part in chunks]) for key in chunks[0]}
        for name, chunks in parts.items()
        if chunks
    }


def top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The top token and its probability at each row of logits (..., vocab), in float32 whatever the autocast:
    the logit-lens grid, here and in a remote job."""
    p, i = torch.softmax(logits.float(), dim=-1).max(-1)  # softmax autocasts to float32 itself
    return p, i.to(RANK_DTYPE)


def margins(step_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per row and generated step, by how much the output probability of the greedy token beats the runner-up's:
    `generate`'s per-step logits, each (rows, vocab) -> (rows, steps); here and in a remote job."""
    top2 = torch.stack(list(step_logits), dim=1).float().softmax(dim=-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]
