"""The exact logit lens: every block's output read through the model's own final norm, unembedding and
final-logit soft-capping, so the last block's lens is the model's output.

`collect` runs the model once over a batch and keeps what the lens reads; `read` turns that into
`Trace`s (cheap, repeatable at other temperatures); `trace` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.loader import LoadedModel
from lens.tokens import answer_token, encode

MAX_LENS_ELEMENTS = 1 << 23
"""Rows x vocab unembedded at once: bounds the lens's memory (32 MiB of float32 per tensor)."""


@dataclass(frozen=True)
class Residuals:
    """What one forward pass leaves for the lens, at each prompt's last position."""

    prompts: tuple[str, ...]
    resid: torch.Tensor
    """Block outputs (the residual stream after each block), shape (batch, n_layers, d_model)."""
    output_logits: torch.Tensor
    """The model's own output logits, shape (batch, vocab)."""


@dataclass(frozen=True)
class Watched:
    """One token followed through the layers (an answer variant, a subject word)."""

    text: str
    token: str
    p: tuple[float, ...]
    """Lens probability at each layer."""
    rank: tuple[int, ...]
    """Lens rank at each layer, 1 = top."""
    p_output: float
    rank_output: int


@dataclass(frozen=True)
class LayerLens:
    """The lens at one block's output (last prompt position)."""

    layer: int
    """0-based block index."""
    depth: float
    """(layer + 1) / n_layers: 1.0 is the last block."""
    top: tuple[tuple[str, float], ...]
    """Top-k tokens with their probabilities."""
    p_answer: float | None
    rank_answer: int | None
    entropy: float
    """Entropy of the lens distribution, nats."""
    kl_to_output: float
    """KL(output || lens), nats: how far this layer's distribution is from the model's output."""
    top1_raw: str | None = None
    """Top token of the raw residual unembedded without the final norm (when asked for)."""
    rank_answer_raw: int | None = None


@dataclass(frozen=True)
class OutputLens:
    """The model's own output distribution at the last position."""

    top: tuple[tuple[str, float], ...]
    p_answer: float | None
    rank_answer: int | None
    entropy: float


@dataclass(frozen=True)
class Trace:
    """The logit lens over every block for one prompt."""

    model: str
    prompt: str
    answer: str | None
    answer_token: str | None
    answer_note: str | None
    n_layers: int
    temperature: float
    layers: tuple[LayerLens, ...]
    output: OutputLens
    final_lens_max_abs_diff: float
    """max |lens logits of the last block - output logits|: 0 up to float error for an exact lens."""
    output_max_abs_logit: float
    """max |output logit|: the scale the differences above are measured against."""
    watched: tuple[Watched, ...] = ()
    final_raw_max_abs_diff: float | None = None
    """max |unembed(last residual, no final norm) - output logits| (when asked for)."""
    final_raw_top1_agrees: bool | None = None

    def to_dict(self) -> dict:
        """The `lens trace --json` schema."""
        return {
            "model": self.model,
            "prompt": self.prompt,
            "answer": self.answer,
            "answer_token": self.answer_token,
            "n_layers": self.n_layers,
            "layers": [
                {
                    "layer": lay.layer,
                    "depth": lay.depth,
                    "top": [list(t) for t in lay.top],
                    "p_answer": lay.p_answer,
                    "rank_answer": lay.rank_answer,
                    "entropy": lay.entropy,
                    "kl_to_output": lay.kl_to_output,
                }
                for lay in self.layers
            ],
            "output": {
                "top": [list(t) for t in self.output.top],
                "p_answer": self.output.p_answer,
                "rank_answer": self.output.rank_answer,
                "entropy": self.output.entropy,
            },
        }


def block_hooks(model: LoadedModel) -> list[str]:
    """The hook names of every block's output, in order."""
    return [f"blocks.{i}.hook_out" for i in range(model.n_layers)]


def lens_logits(model: LoadedModel, resid: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """Residual stream (..., d_model) -> logits (..., vocab) through the model's own final norm,
    unembedding and soft-capping; `norm=False` skips the norm (the raw residual, unembedded)."""
    bridge = model.bridge
    logits = bridge.unembed(bridge.ln_final(resid) if norm else resid)
    if norm and model.softcap:
        logits = torch.tanh(logits / model.softcap) * model.softcap
    return logits


@torch.inference_mode()
def collect(model: LoadedModel, prompts: Sequence[str], batch_size: int = 16) -> Residuals:
    """Run the model once per batch of prompts, caching only the block outputs the lens reads."""
    names = block_hooks(model)
    resid, output = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        batch = encode(model.tokenizer, chunk, model.n_ctx)
        logits, cache = model.bridge.run_with_cache(
            batch["input_ids"].to(model.device),
            attention_mask=batch["attention_mask"].to(model.device),
            names_filter=names,
            logits_to_keep=1,  # the output is read at the last position only: unembed only that
        )
        resid.append(torch.stack([cache[name][:, -1] for name in names], dim=1))
        output.append(logits[:, -1])
        del cache, logits
    return Residuals(tuple(prompts), torch.cat(resid), torch.cat(output))


@torch.inference_mode()
def read(
    model: LoadedModel,
    residuals: Residuals,
    answers: Sequence[str | None] | None = None,
    watch: Sequence[Sequence[str]] | None = None,
    top_k: int = 5,
    temperature: float = 1.0,
    raw: bool = False,
) -> list[Trace]:
    """Read the lens from collected residuals, one Trace per prompt.

    Args:
        answers: per prompt, the answer string to follow (first token in context), or None.
        watch: per prompt, more strings to follow through the layers (answer variants, subjects).
        temperature: divides every layer's logits and the output's before the softmax.
        raw: also unembed each residual without the final norm (rank of the answer, top token).
    """
    return read_at(model, residuals, (temperature,), answers, watch, top_k, raw)[temperature]


@torch.inference_mode()
def read_at(
    model: LoadedModel,
    residuals: Residuals,
    temperatures: Sequence[float],
    answers: Sequence[str | None] | None = None,
    watch: Sequence[Sequence[str]] | None = None,
    top_k: int = 5,
    raw: bool = False,
) -> dict[float, list[Trace]]:
    """`read` at several temperatures, unembedding each layer once for all of them."""
    if any(t <= 0 for t in temperatures):
        raise ValueError("temperatures must be positive")
    n = len(residuals.prompts)
    answers = list(answers) if answers is not None else [None] * n
    watch = list(watch) if watch is not None else [()] * n
    tokens = [
        (answer_token(model.tokenizer, prompt, a) if a is not None else None,
         [answer_token(model.tokenizer, prompt, w) for w in ws])
        for prompt, a, ws in zip(residuals.prompts, answers, watch)
    ]
    rows_per_chunk = max(1, MAX_LENS_ELEMENTS // (model.n_layers * residuals.output_logits.shape[-1]))
    traces: dict[float, list[Trace]] = {t: [] for t in temperatures}
    for start in range(0, n, rows_per_chunk):
        rows = range(start, min(n, start + rows_per_chunk))
        resid = residuals.resid[rows.start : rows.stop]
        b, n_layers, d = resid.shape
        flat = resid.reshape(b * n_layers, d)
        logits = lens_logits(model, flat).reshape(b, n_layers, -1).float()
        raw_logits = lens_logits(model, flat, norm=False).reshape(b, n_layers, -1).float() if raw else None
        output = residuals.output_logits[rows.start : rows.stop].float()
        fixed = _ranked(logits, raw_logits, output, [tokens[i] for i in rows], top_k)
        for temperature in temperatures:
            traces[temperature] += _traces(
                model, residuals.prompts, rows, tokens, logits, output, fixed, temperature
            )
    return traces


def trace(
    model: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str | None] | None = None,
    **options,
) -> list[Trace]:
    """The lens for a batch of prompts: one forward pass per batch, then `read` (same options)."""
    return read(model, collect(model, prompts), answers, **options)


def _ranked(logits, raw_logits, output, tokens, top_k) -> dict:
    """What does not depend on temperature: top-k ids and the ranks of every followed token.

    Ranks come from the logits themselves: log_softmax's rounding reorders near-ties deep in the
    vocabulary (rank 10375 vs 10374 at another temperature), which the logits do not.
    """
    fixed: dict = {
        "top_i": logits.topk(top_k, dim=-1).indices,
        "out_top_i": output.topk(top_k, dim=-1).indices,
        "exact_diff": (logits[:, -1] - output).abs().amax(-1),
        "ranks": [],
    }
    for j, (ans, watched) in enumerate(tokens):
        ids = sorted({t.token_id for t in ([ans] if ans else []) + watched})
        index = torch.tensor(ids, dtype=torch.long)
        layer_ranks = (logits[j][:, None, :] > logits[j][:, index, None]).sum(-1) + 1  # (layers, ids)
        out_ranks = (output[j][None, :] > output[j][index, None]).sum(-1) + 1
        ranks = {"ids": ids, "layers": layer_ranks.T.tolist(), "output": out_ranks.tolist()}
        if raw_logits is not None and ans is not None:
            column = raw_logits[j][:, ans.token_id : ans.token_id + 1]
            ranks["raw_answer"] = ((raw_logits[j] > column).sum(-1) + 1).tolist()
        fixed["ranks"].append(ranks)
    if raw_logits is not None:
        fixed["raw_top1"] = raw_logits.argmax(-1)
        fixed["raw_diff"] = (raw_logits[:, -1] - output).abs().amax(-1)
    return fixed


def _traces(model, prompts, rows, tokens, logits, output, fixed, temperature) -> list[Trace]:
    """Traces for one chunk of prompts at one temperature, from already unembedded logits."""
    decode = model.tokenizer.decode
    n_layers = model.n_layers
    logp = torch.log_softmax(logits / temperature, dim=-1)
    logq = torch.log_softmax(output / temperature, dim=-1)
    p, q = logp.exp(), logq.exp()
    entropy = -torch.einsum("blv,blv->bl", p, logp)
    out_entropy = -(q * logq).sum(-1)
    kl = -out_entropy[:, None] - torch.einsum("bv,blv->bl", q, logp)  # KL(q || p)
    top_p = p.gather(-1, fixed["top_i"]).tolist()
    out_top_p = q.gather(-1, fixed["out_top_i"]).tolist()
    top_i, out_top_i = fixed["top_i"].tolist(), fixed["out_top_i"].tolist()
    raw = "raw_top1" in fixed
    raw_top1 = fixed["raw_top1"].tolist() if raw else None

    def tops(ids: list[int], ps: list[float]) -> tuple[tuple[str, float], ...]:
        return tuple(zip((decode([t]) for t in ids), ps))

    traces = []
    for j, i in enumerate(rows):
        ans, watched_tokens = tokens[i]
        ranks = fixed["ranks"][j]
        column = {token_id: k for k, token_id in enumerate(ranks["ids"])}
        p_layers = p[j][:, ranks["ids"]].T.tolist() if ranks["ids"] else []
        p_out = q[j][ranks["ids"]].tolist() if ranks["ids"] else []
        a = column[ans.token_id] if ans else None
        layers = tuple(
            LayerLens(
                layer=layer,
                depth=(layer + 1) / n_layers,
                top=tops(top_i[j][layer], top_p[j][layer]),
                p_answer=p_layers[a][layer] if ans else None,
                rank_answer=ranks["layers"][a][layer] if ans else None,
                entropy=float(entropy[j, layer]),
                kl_to_output=max(0.0, float(kl[j, layer])),
                top1_raw=decode([raw_top1[j][layer]]) if raw else None,
                rank_answer_raw=ranks["raw_answer"][layer] if raw and ans else None,
            )
            for layer in range(n_layers)
        )
        watched = tuple(
            Watched(
                text=tok.text,
                token=tok.token,
                p=tuple(p_layers[column[tok.token_id]]),
                rank=tuple(ranks["layers"][column[tok.token_id]]),
                p_output=p_out[column[tok.token_id]],
                rank_output=ranks["output"][column[tok.token_id]],
            )
            for tok in watched_tokens
        )
        traces.append(
            Trace(
                model=model.name,
                prompt=prompts[i],
                answer=ans.text if ans else None,
                answer_token=ans.token if ans else None,
                answer_note=ans.note if ans else None,
                n_layers=n_layers,
                temperature=temperature,
                layers=layers,
                output=OutputLens(
                    top=tops(out_top_i[j], out_top_p[j]),
                    p_answer=p_out[a] if ans else None,
                    rank_answer=ranks["output"][a] if ans else None,
                    entropy=float(out_entropy[j]),
                ),
                final_lens_max_abs_diff=float(fixed["exact_diff"][j]),
                output_max_abs_logit=float(output[j].abs().max()),
                watched=watched,
                final_raw_max_abs_diff=float(fixed["raw_diff"][j]) if raw else None,
                final_raw_top1_agrees=bool(raw_top1[j][-1] == int(output[j].argmax())) if raw else None,
            )
        )
    return traces


@dataclass(frozen=True)
class LensGrid:
    """The classic logit-lens picture for one prompt: the top token at every (layer, position)."""

    model: str
    prompt: str
    tokens: tuple[str, ...]
    """The prompt's tokens as the model sees them (BOS included where the model adds it)."""
    top1: tuple[tuple[str, ...], ...]
    """(n_layers, positions): the lens's top token predicting the *next* token at each position."""
    p: tuple[tuple[float, ...], ...]
    """(n_layers, positions): its probability."""


@torch.inference_mode()
def lens_grid(model: LoadedModel, prompt: str) -> LensGrid:
    """The lens at every block and every prompt position (one forward pass)."""
    batch = encode(model.tokenizer, [prompt], model.n_ctx)
    names = block_hooks(model)
    _, cache = model.bridge.run_with_cache(
        batch["input_ids"].to(model.device),
        attention_mask=batch["attention_mask"].to(model.device),
        names_filter=names,
    )
    resid = torch.stack([cache[name][0] for name in names])  # (n_layers, positions, d_model)
    probs = torch.softmax(lens_logits(model, resid).float(), dim=-1)
    top_p, top_i = probs.max(-1)
    ids = batch["input_ids"][0].tolist()
    decode = model.tokenizer.decode
    return LensGrid(
        model=model.name,
        prompt=prompt,
        tokens=tuple(decode([i]) for i in ids),
        top1=tuple(tuple(decode([i]) for i in row) for row in top_i.tolist()),
        p=tuple(tuple(row) for row in top_p.tolist()),
    )
