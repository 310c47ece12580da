"""The logit lens over every block, at each prompt's last position.

`collect` runs the model once over a batch and keeps what a lens reads (block outputs and output logits),
through an execution backend (`lens.backends`: TransformerLens's bridge by default, or nnsight); `read` turns
that into one `Trace` per prompt through a lens (the exact one by default), cheaply and at any temperature;
`trace` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.backends import forward
from lens.errors import LensError
from lens.lenses import EXACT, Lens
from lens.model import LoadedModel
from lens.progress import bar
from lens.spot import require_agreement, spot_checks
from lens.tokens import AnswerToken, answer_token, encode_ids, followed_token, prompt_ids

MAX_LENS_ELEMENTS = 1 << 23
"""Rows x vocab unembedded at once: bounds the lens's memory (32 MiB of float32 per tensor)."""


@dataclass(frozen=True)
class Residuals:
    """What one forward pass leaves for the lens, at each prompt's last position."""

    prompts: tuple[str, ...]
    read_after: tuple[str, ...]
    """Per prompt, the text the lens read at the end of: the prompt, plus the whitespace its answer starts
    with where that is a token of its own (the model writes it first; the lens follows the word after)."""
    resid: torch.Tensor | None
    """Block outputs (the residual stream after each block), shape (batch, n_layers, d_model); None where
    the exact lens was applied where the model ran (on NDIF: `lens_logits`)."""
    output_logits: torch.Tensor
    """The model's own output logits, shape (batch, vocab)."""
    lens_logits: torch.Tensor | None = None
    """The exact lens's logits at every block, shape (batch, n_layers, vocab), where it was applied where
    the model ran (a remote model); None otherwise (the lens reads `resid` here)."""
    backend: str = "bridge"
    """The execution backend that ran the forward pass (`lens.backends.BACKENDS`)."""


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
    whole: bool
    """Whether the text is exactly this one token here (not a prefix of a longer spelling, no lead)."""
    token_id: int | None = None


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


@dataclass(frozen=True)
class OutputLens:
    """The model's own output distribution at the last position."""

    top: tuple[tuple[str, float], ...]
    p_answer: float | None
    rank_answer: int | None
    entropy: float


@dataclass(frozen=True)
class Trace:
    """One lens over every block for one prompt."""

    model: str
    prompt: str
    read_after: str
    """The text the lens read at the end of: the prompt, or the prompt and the answer's leading whitespace."""
    lens: str
    """Which lens read the residuals: "exact" (final norm, unembedding, soft-cap) or "raw" (no norm)."""
    answer: str | None
    answer_token: str | None
    answer_note: str | None
    n_layers: int
    temperature: float
    layers: tuple[LayerLens, ...]
    output: OutputLens
    final_max_abs_diff: float
    """max |this lens's logits at the last block - output logits|: 0 up to float error for the exact lens."""
    output_max_abs_logit: float
    """max |output logit|: the scale the difference above is measured against."""
    watched: tuple[Watched, ...] = ()

    def to_dict(self) -> dict:
        """The `lens trace --json` schema."""
        return {
            "model": self.model,
            "prompt": self.prompt,
            "read_after": self.read_after,
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


@torch.inference_mode()
def collect(
    model: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str | None] | None = None,
    batch_size: int = 16,
    backend: str = "bridge",
    leads: Sequence[Sequence[int]] | None = None,
) -> Residuals:
    """Run the model once per batch of prompts, keeping only what the lens reads at the last position.

    With `answers`, each prompt is read where its answer's followed token comes next (after the
    whitespace the answer starts with, where that is a token of its own). With `leads`, each prompt is
    read after those token ids instead (the whitespace or line break the model itself writes first,
    `lens.generate.Continuation.lead_ids`). `backend`: "bridge" (TransformerLens, the default) or
    "nnsight" (`lens.backends`); a remote model runs through nnsight."""
    tokenizer = model.tokenizer
    if leads is not None:
        sequences = [prompt_ids(tokenizer, p) + list(lead) for p, lead in zip(prompts, leads)]
        texts = [p + tokenizer.decode(list(lead)) for p, lead in zip(prompts, leads)]
    else:
        answers = list(answers) if answers is not None else [None] * len(prompts)
        texts = [p + answer_token(tokenizer, p, a).lead if a is not None else p for p, a in zip(prompts, answers)]
        sequences = [prompt_ids(tokenizer, text) for text in texts]
    reads = []
    starts = range(0, len(texts), batch_size)
    for start in bar(starts, desc=f"{model.name}: the lens over {len(texts)} prompts", unit="batch"):
        chunk = sequences[start : start + batch_size]
        reads.append(forward(model, encode_ids(tokenizer, chunk, model.n_ctx), backend))
    if spot_checks(model):  # a wrong kernel can turn up long after the load check (lens.spot)
        require_agreement(model, sequences[0])

    def joined(field: str) -> torch.Tensor | None:
        parts = [getattr(r, field) for r in reads]
        return None if parts[0] is None else torch.cat(parts)

    return Residuals(tuple(prompts), tuple(texts), joined("resid"), joined("output_logits"),
                     joined("lens_logits"), backend)


@torch.inference_mode()
def read(
    model: LoadedModel,
    residuals: Residuals,
    answers: Sequence[str | AnswerToken | None] | None = None,
    watch: Sequence[Sequence[str | AnswerToken]] | None = None,
    top_k: int = 5,
    temperature: float = 1.0,
    lens: Lens = EXACT,
) -> list[Trace]:
    """Read a lens from collected residuals, one Trace per prompt.

    Args:
        answers: per prompt, the answer string to follow (first token in context), the token to follow at
            the read position (an `AnswerToken`, e.g. the model's own first token), or None.
        watch: per prompt, more strings to follow through the layers (answer variants, subjects); those
            that cannot be followed there (punctuation, nothing) are left out.
        temperature: divides every layer's logits and the output's before the softmax.
        lens: the exact logit lens (default) or another, e.g. `lens.lenses.RAW`.
    """
    return read_at(model, residuals, (temperature,), answers, watch, top_k, lens)[temperature]


@torch.inference_mode()
def read_at(
    model: LoadedModel,
    residuals: Residuals,
    temperatures: Sequence[float],
    answers: Sequence[str | AnswerToken | None] | None = None,
    watch: Sequence[Sequence[str | AnswerToken]] | None = None,
    top_k: int = 5,
    lens: Lens = EXACT,
) -> dict[float, list[Trace]]:
    """`read` at several temperatures, unembedding each layer once for all of them."""
    if any(t <= 0 for t in temperatures):
        raise ValueError("temperatures must be positive")
    vocab = residuals.output_logits.shape[-1]
    if not 1 <= top_k <= vocab:
        raise LensError(f"--top-k must be between 1 and the vocabulary size, {vocab}")
    n = len(residuals.prompts)
    answers = list(answers) if answers is not None else [None] * n
    watch = list(watch) if watch is not None else [()] * n
    followed = []
    for prompt, text, a, ws in zip(residuals.prompts, residuals.read_after, answers, watch):
        ans = answer_token(model.tokenizer, prompt, a) if isinstance(a, str) else a
        if isinstance(a, str) and prompt + ans.lead != text:
            raise ValueError(f"{prompt!r} was collected to be read after {text!r}: collect it with its answer")
        followed.append(_Followed(ans, tuple(_followable(model.tokenizer, text, ws))))
    if residuals.lens_logits is not None and lens != EXACT:
        raise LensError(f"{model.name} was read remotely through the exact lens only: the {lens.name} lens needs "
                        "the block outputs, which stay where the model ran")
    rows_per_chunk = max(1, MAX_LENS_ELEMENTS // (model.n_layers * residuals.output_logits.shape[-1]))
    traces: dict[float, list[Trace]] = {t: [] for t in temperatures}
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        chunk = _Chunk(
            model=model,
            lens=lens,
            prompts=residuals.prompts[start:stop],
            read_after=residuals.read_after[start:stop],
            followed=followed[start:stop],
            logits=_lens_logits(model, residuals, lens, start, stop),
            output=residuals.output_logits[start:stop].float(),
            top_k=top_k,
        )
        for temperature in temperatures:
            traces[temperature] += chunk.traces(temperature)
    return traces


def trace(
    model: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str | None] | None = None,
    backend: str = "bridge",
    **options,
) -> list[Trace]:
    """The lens for a batch of prompts: one forward pass per batch through `backend` (see `collect`), then
    `read` (same options)."""
    return read(model, collect(model, prompts, answers, backend=backend), answers, **options)


def _lens_logits(model: LoadedModel, residuals: Residuals, lens: Lens, start: int, stop: int) -> torch.Tensor:
    """The lens's logits for prompts start:stop, (prompts, n_layers, vocab) in float32."""
    if residuals.lens_logits is not None:
        return residuals.lens_logits[start:stop].float()
    resid = residuals.resid[start:stop]
    b, n_layers, d = resid.shape
    return lens.logits(model, resid.reshape(b * n_layers, d)).reshape(b, n_layers, -1).float()


def _followable(tokenizer, text: str, words: Sequence[str | AnswerToken]) -> list[AnswerToken]:
    """The watched words that can be followed after `text` (a word that tokenizes to nothing, or to
    punctuation, is left out: it cannot be a whole token there); a token given as such is followed as it is."""
    tokens = (word if isinstance(word, AnswerToken) else followed_token(tokenizer, text, word) for word in words)
    return [token for token in tokens if token is not None]


@dataclass(frozen=True)
class _Followed:
    """The tokens followed for one prompt: its answer (or None) and the watched strings."""

    answer: AnswerToken | None
    watched: tuple[AnswerToken, ...]

    def ids(self) -> list[int]:
        """Every followed token id, once, sorted."""
        return sorted({t.token_id for t in ([self.answer] if self.answer else []) + list(self.watched)})


@dataclass(frozen=True)
class _Ranks:
    """Ranks of one prompt's followed tokens, 1 = top; they do not depend on the temperature."""

    ids: list[int]
    layers: list[list[int]]
    """(followed tokens, layers)."""
    output: list[int]


def _ranks_of(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """1 + how many logits exceed each of `index`'s, per row: logits (rows, vocab) -> (rows, len(index)).

    One pass over the vocabulary per row: each logit finds how many of the followed values lie below it
    (searchsorted), and counting those per slot gives how many logits exceed each followed value. Three
    times faster than comparing every followed value with the whole vocabulary (Gemma 3: 262,144 logits).
    """
    values, order = logits[:, index].sort(dim=-1)
    below = torch.searchsorted(values, logits)  # per logit: how many followed values are strictly below it
    counts = torch.zeros(logits.shape[0], len(index) + 1, dtype=torch.long).scatter_add_(
        1, below, torch.ones_like(below))
    exceed = counts.flip(1).cumsum(1).flip(1)[:, 1:]  # exceed[k]: logits above the k-th smallest value
    return torch.empty_like(exceed).scatter_(1, order, exceed + 1)


class _Chunk:
    """A chunk of prompts already unembedded by a lens: what does not depend on the temperature is
    computed once (top-k ids, ranks), the rest per temperature."""

    def __init__(self, *, model: LoadedModel, lens: Lens, prompts: Sequence[str], read_after: Sequence[str],
                 followed: list[_Followed], logits: torch.Tensor, output: torch.Tensor, top_k: int) -> None:
        self.model, self.lens, self.prompts, self.read_after = model, lens, prompts, read_after
        self.followed = followed
        self.logits, self.output = logits, output
        self.top_ids = logits.topk(top_k, dim=-1).indices
        self.output_top_ids = output.topk(top_k, dim=-1).indices
        self.final_diff = (logits[:, -1] - output).abs().amax(-1)
        self.ranks = [self._ranks(j, f) for j, f in enumerate(followed)]

    def _ranks(self, j: int, followed: _Followed) -> _Ranks:
        """Ranks come from the logits themselves: log_softmax's rounding reorders near-ties deep in the
        vocabulary (rank 10375 vs 10374 at another temperature), which the logits do not."""
        ids = followed.ids()
        index = torch.tensor(ids, dtype=torch.long)
        layer_ranks = _ranks_of(self.logits[j], index)  # (layers, ids)
        out_ranks = _ranks_of(self.output[j][None], index)[0]
        return _Ranks(ids, layer_ranks.T.tolist(), out_ranks.tolist())

    def traces(self, temperature: float) -> list[Trace]:
        """One Trace per prompt of the chunk at this temperature."""
        decode = self.model.tokenizer.decode
        n_layers = self.model.n_layers
        logp = torch.log_softmax(self.logits / temperature, dim=-1)
        logq = torch.log_softmax(self.output / temperature, dim=-1)
        p, q = logp.exp(), logq.exp()
        entropy = -torch.einsum("blv,blv->bl", p, logp)
        out_entropy = -(q * logq).sum(-1)
        kl = -out_entropy[:, None] - torch.einsum("bv,blv->bl", q, logp)  # KL(q || p)
        top_p = p.gather(-1, self.top_ids).tolist()
        out_top_p = q.gather(-1, self.output_top_ids).tolist()
        top_i, out_top_i = self.top_ids.tolist(), self.output_top_ids.tolist()

        def tops(ids: list[int], ps: list[float]) -> tuple[tuple[str, float], ...]:
            return tuple(zip((decode([t]) for t in ids), ps))

        traces = []
        for j, (prompt, text, followed, ranks) in enumerate(zip(self.prompts, self.read_after, self.followed, self.ranks)):
            column = {token_id: k for k, token_id in enumerate(ranks.ids)}
            p_layers = p[j][:, ranks.ids].T.tolist() if ranks.ids else []
            p_out = q[j][ranks.ids].tolist() if ranks.ids else []
            ans = followed.answer
            a = column[ans.token_id] if ans else None
            layers = tuple(
                LayerLens(
                    layer=layer,
                    depth=(layer + 1) / n_layers,
                    top=tops(top_i[j][layer], top_p[j][layer]),
                    p_answer=p_layers[a][layer] if ans else None,
                    rank_answer=ranks.layers[a][layer] if ans else None,
                    entropy=float(entropy[j, layer]),
                    kl_to_output=max(0.0, float(kl[j, layer])),
                )
                for layer in range(n_layers)
            )
            watched = tuple(
                Watched(
                    text=tok.text,
                    token=tok.token,
                    p=tuple(p_layers[column[tok.token_id]]),
                    rank=tuple(ranks.layers[column[tok.token_id]]),
                    p_output=p_out[column[tok.token_id]],
                    rank_output=ranks.output[column[tok.token_id]],
                    whole=tok.n_tokens == 1 and not tok.lead,
                    token_id=tok.token_id,
                )
                for tok in followed.watched
            )
            traces.append(
                Trace(
                    model=self.model.name,
                    prompt=prompt,
                    read_after=text,
                    lens=self.lens.name,
                    answer=ans.text if ans else None,
                    answer_token=ans.token if ans else None,
                    answer_note=ans.note if ans else None,
                    n_layers=n_layers,
                    temperature=temperature,
                    layers=layers,
                    output=OutputLens(
                        top=tops(out_top_i[j], out_top_p[j]),
                        p_answer=p_out[a] if ans else None,
                        rank_answer=ranks.output[a] if ans else None,
                        entropy=float(out_entropy[j]),
                    ),
                    final_max_abs_diff=float(self.final_diff[j]),
                    output_max_abs_logit=float(self.output[j].abs().max()),
                    watched=watched,
                )
            )
        return traces
