"""The logit lens over every block, at each prompt's last position.

`collect` runs the model once over a batch and keeps what a lens reads (block outputs and output logits),
through an execution backend (`lens.reads.backends`: TransformerLens's bridge by default, or nnsight); `read` turns
that into one `Trace` per prompt (`lens.reads.records`) through a lens (the exact one by default), cheaply and at
any temperature; `trace` does both. Both paths reduce the lens by `lens.reads.reduce.reduce`: here at read time,
over a chunk of prompts; for a model on NDIF inside its job, where only the reduction is kept (`Wanted` says,
before the forward pass, what the reads will ask for).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.errors import LensError
from lens.lenses.lenses import EXACT, Lens
from lens.models.model import LoadedModel, Model
from lens.models.spot import require_agreement, spot_checks
from lens.progress import bar
from lens.reads.backends import forward
from lens.reads.records import LayerLens, OutputLens, Residuals, Trace, Wanted, Watched
from lens.reads.reduce import BATCH, chunks, reduce
from lens.tokens import AnswerToken, answer_token, encode_ids, followed_token, prompt_ids


@torch.inference_mode()
def collect(
    model: Model,
    prompts: Sequence[str],
    answers: Sequence[str | None] | None = None,
    batch_size: int = BATCH,
    backend: str = "bridge",
    leads: Sequence[Sequence[int]] | None = None,
    wanted: Wanted | None = None,
) -> Residuals:
    """Run the model once per batch of prompts, keeping only what the lens reads at the last position.

    With `answers`, each prompt is read where its answer's followed token comes next (after the
    whitespace the answer starts with, where that is a token of its own). With `leads`, each prompt is
    read after those token ids instead (the whitespace or line break the model itself writes first,
    `lens.reads.generate.Continuation.lead_ids`). `backend`: "bridge" (TransformerLens, the default) or
    "nnsight" (`lens.reads.backends`). A model on NDIF runs through nnsight there, one job per batch, and brings
    back the lens reduced for `wanted` (default: the answers through the exact lens, top 5, temperature 1)."""
    tokenizer = model.tokenizer
    if leads is not None:
        sequences = [prompt_ids(tokenizer, p) + list(lead) for p, lead in zip(prompts, leads)]
        texts = [p + tokenizer.decode(list(lead)) for p, lead in zip(prompts, leads)]
    else:
        answers = list(answers) if answers is not None else [None] * len(prompts)
        texts = [p + answer_token(tokenizer, p, a).lead if a is not None else p for p, a in zip(prompts, answers)]
        sequences = [prompt_ids(tokenizer, text) for text in texts]
    return residuals_of(
        model, tuple(prompts), tuple(texts), sequences, wanted or Wanted(answers=answers), backend, batch_size
    )


@functools.singledispatch
def residuals_of(
    model: Model,
    prompts: tuple[str, ...],
    texts: tuple[str, ...],
    sequences: list[list[int]],
    wanted: Wanted,
    backend: str,
    batch_size: int,
) -> Residuals:
    """`collect`'s forward passes over token sequences, a batch at a time, keeping the block outputs and output
    logits at the last position (a model on NDIF reduces its lens there instead, for `wanted`: `lens.remote.reads`).
    """
    reads = []
    starts = range(0, len(texts), batch_size)
    for start in bar(starts, desc=f"{model.name}: the lens over {len(texts)} prompts", unit="batch"):
        chunk = sequences[start : start + batch_size]
        reads.append(forward(model, encode_ids(model.tokenizer, chunk, model.n_ctx), backend))
    if spot_checks(model):  # a wrong kernel can turn up long after the load check (lens.models.spot)
        require_agreement(model, sequences[0])
    return Residuals(
        prompts, texts, torch.cat([r.resid for r in reads]), torch.cat([r.output_logits for r in reads]), backend
    )


@torch.inference_mode()
def read(
    model: Model,
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
        lens: the exact logit lens (default) or another, e.g. `lens.lenses.lenses.RAW`.
    """
    return read_at(model, residuals, (temperature,), answers, watch, top_k, lens)[temperature]


@torch.inference_mode()
def read_at(
    model: Model,
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
    n = len(residuals.prompts)
    answers = list(answers) if answers is not None else [None] * n
    watch = list(watch) if watch is not None else [()] * n
    followed = [
        followed_for(model, prompt, text, a, ws)
        for prompt, text, a, ws in zip(residuals.prompts, residuals.read_after, answers, watch)
    ]
    if residuals.reduced is not None:
        return _read_reduced(model, residuals, tuple(temperatures), followed, top_k, lens)
    vocab = residuals.output_logits.shape[-1]
    if not 1 <= top_k <= vocab:
        raise LensError(f"--top-k must be between 1 and the vocabulary size, {vocab}")
    traces: dict[float, list[Trace]] = {t: [] for t in temperatures}
    for start, stop in chunks(n, model.n_layers, vocab):  # as a remote job chunks the same prompts
        ids = [f.ids() for f in followed[start:stop]]
        reduced = reduce(
            _lens_logits(model, residuals, lens, start, stop),
            residuals.output_logits[start:stop],
            padded_ids(ids),
            top_k,
            tuple(temperatures),
        )
        for k, temperature in enumerate(temperatures):
            traces[temperature] += _traces(
                model,
                lens.name,
                residuals.prompts[start:stop],
                residuals.read_after[start:stop],
                followed[start:stop],
                ids,
                reduced,
                k,
                temperature,
                top_k,
            )
    return traces


def _read_reduced(
    model, residuals: Residuals, temperatures: tuple[float, ...], followed: list[Followed], top_k: int, lens: Lens
) -> dict[float, list[Trace]]:
    """`read_at` of a lens reduced where the model ran: only what `Wanted` asked for is there to read."""
    reduced = residuals.reduced
    if lens.name not in reduced.lenses:
        raise LensError(
            f"{model.name} was reduced remotely for the {', '.join(reduced.lenses)} lens only: collect "
            f"it with the {lens.name} lens in `Wanted.lenses`"
        )
    missing = [t for t in temperatures if t not in reduced.temperatures]
    if missing or top_k > reduced.top_k:
        raise LensError(
            f"{model.name} was reduced remotely at temperature {reduced.temperatures} with the top "
            f"{reduced.top_k}: collect it with temperature {missing or temperatures} and top-k {top_k} "
            "in `Wanted`"
        )
    planned = reduced.ids[lens.name]
    for prompt, f, ids in zip(residuals.prompts, followed, planned):
        absent = set(f.ids()) - set(ids)
        if absent:
            raise LensError(
                f"{model.name} was reduced remotely without following token ids {sorted(absent)} after "
                f"{prompt!r}: collect it with them in `Wanted`"
            )
    indices = [reduced.temperatures.index(t) for t in temperatures]
    return {
        t: _traces(
            model,
            lens.name,
            residuals.prompts,
            residuals.read_after,
            followed,
            planned,
            reduced.lenses[lens.name],
            k,
            t,
            top_k,
        )
        for t, k in zip(temperatures, indices)
    }


def output_probabilities(residuals: Residuals, ids: Sequence[Sequence[int]]) -> list[list[float]]:
    """Per prompt, the model's output probability (temperature 1) of each of its `ids`; for a lens reduced
    remotely, of ids `Wanted.output_ids` (or the followed tokens) asked for."""
    if residuals.reduced is None:
        logq = torch.log_softmax(residuals.output_logits.float(), dim=-1)
        return [logq[j, list(row)].exp().tolist() for j, row in enumerate(ids)]
    reduced = residuals.reduced
    if 1.0 not in reduced.temperatures:
        raise LensError("output probabilities are read at temperature 1: collect with 1.0 in `Wanted.temperatures`")
    name = next(iter(reduced.lenses))
    tensors, k = reduced.lenses[name], reduced.temperatures.index(1.0)
    out = []
    for j, row in enumerate(ids):
        columns = {t: ("out_extra_logits", c) for c, t in enumerate(reduced.output_ids[j])}
        columns |= {t: ("out_ids_logits", c) for c, t in enumerate(reduced.ids[name][j])}
        absent = set(row) - set(columns)
        if absent:
            raise LensError(
                f"the output probability of token ids {sorted(absent)} was not reduced remotely: collect "
                "them in `Wanted.output_ids`"
            )
        lse = tensors["out_lse"][j, k]
        out.append([float((tensors[columns[t][0]][j, columns[t][1]] - lse).exp()) for t in row])
    return out


def trace(
    model: Model,
    prompts: Sequence[str],
    answers: Sequence[str | None] | None = None,
    backend: str = "bridge",
    **options,
) -> list[Trace]:
    """The lens for a batch of prompts: one forward pass per batch through `backend` (see `collect`), then
    `read` (same options)."""
    lens = options.get("lens", EXACT)
    wanted = Wanted(
        answers=answers,
        lenses={lens.name: options.get("watch")},
        top_k=options.get("top_k", 5),
        temperatures=(options.get("temperature", 1.0),),
    )
    return read(model, collect(model, prompts, answers, backend=backend, wanted=wanted), answers, **options)


def _lens_logits(model: LoadedModel, residuals: Residuals, lens: Lens, start: int, stop: int) -> torch.Tensor:
    """The lens's logits for prompts start:stop, (prompts, n_layers, vocab)."""
    return lens.block_logits(model, residuals.resid[start:stop])


def padded_ids(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Rows of token ids as one (rows, longest) tensor, a shorter row repeating its first id (an empty one: 0)."""
    width = max((len(row) for row in rows), default=0)
    return torch.tensor(
        [list(row) + [row[0] if row else 0] * (width - len(row)) for row in rows], dtype=torch.long
    ).reshape(len(rows), width)


def followed_for(
    model, prompt: str, text: str, answer: str | AnswerToken | None, watch: Sequence[str | AnswerToken]
) -> Followed:
    """What a read follows for one prompt read after `text`: its answer's token and the followable watched ones."""
    ans = answer_token(model.tokenizer, prompt, answer) if isinstance(answer, str) else answer
    if isinstance(answer, str) and prompt + ans.lead != text:
        raise ValueError(f"{prompt!r} was collected to be read after {text!r}: collect it with its answer")
    return Followed(ans, tuple(_followable(model.tokenizer, text, watch)))


def _followable(tokenizer, text: str, words: Sequence[str | AnswerToken]) -> list[AnswerToken]:
    """The watched words that can be followed after `text` (a word that tokenizes to nothing, or to
    punctuation, is left out: it cannot be a whole token there); a token given as such is followed as it is."""
    tokens = (word if isinstance(word, AnswerToken) else followed_token(tokenizer, text, word) for word in words)
    return [token for token in tokens if token is not None]


@dataclass(frozen=True)
class Followed:
    """The tokens followed for one prompt: its answer (or None) and the watched strings."""

    answer: AnswerToken | None
    watched: tuple[AnswerToken, ...]

    def ids(self) -> list[int]:
        """Every followed token id, once, sorted."""
        return sorted({t.token_id for t in ([self.answer] if self.answer else []) + list(self.watched)})


def _traces(
    model,
    lens: str,
    prompts: Sequence[str],
    read_after: Sequence[str],
    followed: Sequence[Followed],
    columns: Sequence[Sequence[int]],
    reduced: dict[str, torch.Tensor],
    k: int,
    temperature: float,
    top_k: int,
) -> list[Trace]:
    """One Trace per prompt from the reduced lens (`lens.reads.reduce.reduce`) at its k-th temperature; `columns`: per
    prompt, the token id of each followed column."""
    decode = model.tokenizer.decode
    n_layers = model.n_layers
    lse, out_lse = reduced["lse"][..., k, None], reduced["out_lse"][:, k, None]
    p_ids = (reduced["ids_logits"] / temperature - lse).exp().tolist()
    q_ids = (reduced["out_ids_logits"] / temperature - out_lse).exp().tolist()
    top_p = (reduced["top_logits"][..., :top_k] / temperature - lse).exp().tolist()
    out_top_p = (reduced["out_top_logits"][:, :top_k] / temperature - out_lse).exp().tolist()
    top_i, out_top_i = reduced["top_ids"][..., :top_k].tolist(), reduced["out_top_ids"][:, :top_k].tolist()
    ranks, out_ranks = reduced["ids_ranks"].tolist(), reduced["out_ids_ranks"].tolist()
    entropy, kl = reduced["entropy"][..., k].tolist(), reduced["kl"][..., k].tolist()
    out_entropy = reduced["out_entropy"][:, k].tolist()
    final_diff, out_max = reduced["final_diff"].tolist(), reduced["out_max_abs"].tolist()

    def tops(ids: list[int], ps: list[float]) -> tuple[tuple[str, float], ...]:
        return tuple(zip((decode([t]) for t in ids), ps))

    traces = []
    for j, (prompt, text, follows) in enumerate(zip(prompts, read_after, followed)):
        column = {token_id: c for c, token_id in enumerate(columns[j])}
        ans = follows.answer
        a = column[ans.token_id] if ans else None
        layers = tuple(
            LayerLens(
                layer=layer,
                depth=(layer + 1) / n_layers,
                top=tops(top_i[j][layer], top_p[j][layer]),
                p_answer=p_ids[j][layer][a] if ans else None,
                rank_answer=ranks[j][layer][a] if ans else None,
                entropy=entropy[j][layer],
                kl_to_output=kl[j][layer],
            )
            for layer in range(n_layers)
        )
        watched = tuple(
            Watched(
                text=tok.text,
                token=tok.token,
                p=tuple(p_ids[j][layer][column[tok.token_id]] for layer in range(n_layers)),
                rank=tuple(ranks[j][layer][column[tok.token_id]] for layer in range(n_layers)),
                p_output=q_ids[j][column[tok.token_id]],
                rank_output=out_ranks[j][column[tok.token_id]],
                whole=tok.n_tokens == 1 and not tok.lead,
                token_id=tok.token_id,
            )
            for tok in follows.watched
        )
        traces.append(
            Trace(
                model=model.name,
                prompt=prompt,
                read_after=text,
                lens=lens,
                answer=ans.text if ans else None,
                answer_token=ans.token if ans else None,
                answer_note=ans.note if ans else None,
                n_layers=n_layers,
                temperature=temperature,
                layers=layers,
                output=OutputLens(
                    top=tops(out_top_i[j], out_top_p[j]),
                    p_answer=q_ids[j][a] if ans else None,
                    rank_answer=out_ranks[j][a] if ans else None,
                    entropy=out_entropy[j],
                ),
                final_max_abs_diff=final_diff[j],
                output_max_abs_logit=out_max[j],
                watched=watched,
            )
        )
    return traces
