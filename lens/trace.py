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

MAX_LENS_ELEMENTS = 1 << 25
"""Rows x vocab unembedded at once: bounds the lens's memory (128 MiB of float32 per tensor)."""


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
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    n = len(residuals.prompts)
    answers = list(answers) if answers is not None else [None] * n
    watch = list(watch) if watch is not None else [()] * n
    rows_per_chunk = max(1, MAX_LENS_ELEMENTS // (model.n_layers * residuals.output_logits.shape[-1]))
    traces = []
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        traces += _read_chunk(
            model, residuals, range(start, stop), answers, watch, top_k, temperature, raw
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


def _read_chunk(model, residuals, rows, answers, watch, top_k, temperature, raw) -> list[Trace]:
    tokenizer, n_layers = model.tokenizer, model.n_layers
    resid = residuals.resid[rows.start : rows.stop]
    out_logits = residuals.output_logits[rows.start : rows.stop].float()
    b, n_l, d = resid.shape
    logits = lens_logits(model, resid.reshape(b * n_l, d)).reshape(b, n_l, -1).float()
    exact_diff = (logits[:, -1] - out_logits).abs().amax(-1)
    # Ranks come from the logits themselves: log_softmax's rounding reorders near-ties deep in the
    # vocabulary (rank 10375 vs 10374 at another temperature), which the logits do not.
    scaled, out_scaled = logits / temperature, out_logits / temperature
    logp = torch.log_softmax(scaled, dim=-1)
    logq = torch.log_softmax(out_scaled, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    kl = (logq.exp()[:, None] * (logq[:, None] - logp)).sum(-1)
    out_entropy = -(logq.exp() * logq).sum(-1)
    top_p, top_i = logp.topk(top_k, dim=-1)
    out_top_p, out_top_i = logq.topk(top_k, dim=-1)
    if raw:
        raw_logits = lens_logits(model, resid.reshape(b * n_l, d), norm=False).reshape(b, n_l, -1)
        raw_logits = raw_logits.float()
        raw_top1 = raw_logits.argmax(-1)
        raw_diff = (raw_logits[:, -1] - out_logits).abs().amax(-1)

    def decode(ids: list[int]) -> list[str]:
        return [tokenizer.decode([i]) for i in ids]

    def rank_of(scores: torch.Tensor, token_id: int) -> torch.Tensor:
        """1-based rank of token_id along the last axis (ties resolve in its favour)."""
        return (scores > scores[..., token_id : token_id + 1]).sum(-1) + 1

    traces = []
    for j, i in enumerate(rows):
        prompt = residuals.prompts[i]
        ans = answer_token(tokenizer, prompt, answers[i]) if answers[i] is not None else None
        p_ans = r_ans = r_raw = None
        out_p = out_r = None
        if ans is not None:
            p_ans = logp[j, :, ans.token_id].exp().tolist()
            r_ans = rank_of(scaled[j], ans.token_id).tolist()
            out_p = float(logq[j, ans.token_id].exp())
            out_r = int(rank_of(out_scaled[j], ans.token_id))
            if raw:
                r_raw = rank_of(raw_logits[j], ans.token_id).tolist()
        layers = tuple(
            LayerLens(
                layer=layer,
                depth=(layer + 1) / n_layers,
                top=tuple(zip(decode(top_i[j, layer].tolist()), top_p[j, layer].exp().tolist())),
                p_answer=p_ans[layer] if p_ans else None,
                rank_answer=r_ans[layer] if r_ans else None,
                entropy=float(entropy[j, layer]),
                kl_to_output=max(0.0, float(kl[j, layer])),
                top1_raw=tokenizer.decode([int(raw_top1[j, layer])]) if raw else None,
                rank_answer_raw=r_raw[layer] if r_raw else None,
            )
            for layer in range(n_layers)
        )
        watched = []
        for text in watch[i]:
            tok = answer_token(tokenizer, prompt, text)
            watched.append(
                Watched(
                    text=text,
                    token=tok.token,
                    p=tuple(logp[j, :, tok.token_id].exp().tolist()),
                    rank=tuple(rank_of(scaled[j], tok.token_id).tolist()),
                    p_output=float(logq[j, tok.token_id].exp()),
                    rank_output=int(rank_of(out_scaled[j], tok.token_id)),
                )
            )
        traces.append(
            Trace(
                model=model.name,
                prompt=prompt,
                answer=ans.text if ans else None,
                answer_token=ans.token if ans else None,
                answer_note=ans.note if ans else None,
                n_layers=n_layers,
                temperature=temperature,
                layers=layers,
                output=OutputLens(
                    top=tuple(zip(decode(out_top_i[j].tolist()), out_top_p[j].exp().tolist())),
                    p_answer=out_p,
                    rank_answer=out_r,
                    entropy=float(out_entropy[j]),
                ),
                final_lens_max_abs_diff=float(exact_diff[j]),
                output_max_abs_logit=float(out_logits[j].abs().max()),
                watched=tuple(watched),
                final_raw_max_abs_diff=float(raw_diff[j]) if raw else None,
                final_raw_top1_agrees=(
                    bool(raw_top1[j, -1] == out_logits[j].argmax()) if raw else None
                ),
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
