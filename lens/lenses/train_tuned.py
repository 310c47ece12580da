"""Training a tuned lens here (`lens train-tuned MODEL [--text FILE]`), with the held-out KL its training records.

The lens is fitted on what it is read on: the last position of short prompts of the kinds the findings ask (a
completion, a question and answer, the reverse completion, German forms, arithmetic, history), over subjects no
judged fact has (`lens/tuned_corpus.toml`: countries, states and provinces, other works and events), and the
position after the whitespace the model writes first where it writes some (" " before a split digit), as a read
follows it; plus general text, mixed in at a tenth of the weight (the Python language reference,
`pydoc_data.topics`, on every machine). One subject in five and one topic in five are held out, never trained on:
the held-out KL is measured on them.

The fit (recipe `RECIPE`, `lens.lenses.tuned_fit`): per block, the weighted ridge least-squares affine map from the
block's output to the last block's output, then `tuned_fit.STEPS` Adam steps on the KL from the model's output
distribution to the lens's, bounded to the output's top 32 tokens plus a tail bucket (its normaliser estimated from
1,024 drawn tokens), in the least squares' whitened coordinates; blocks a group at a time (`tuned_fit.groups`: all
at once for the embedded models, one by one at 8B, where all at once did not fit in 24 GB). Why not the full-vocabulary
KL of tuned-lens: one such step over 256 rows and SmolLM2's 29 translators took 15 s on this 2-core CPU, and
Gemma 3's vocabulary is 5 times SmolLM2's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from lens.errors import LensError
from lens.lenses import tuned_corpus, tuned_fit
from lens.lenses.lenses import TunedLens
from lens.lenses.tuned import CONFIG, read_folder, trained_folder, trained_provenance, write_folder
from lens.lenses.tuned_fit import (
    Rows,
    fit_translators,
    groups,
    least_squares,
    refine,
    rows_kl,
    top_tokens,
    translators,
)
from lens.lenses.tuned_text import Corpus, default_corpus
from lens.models.bridge import plain_view
from lens.models.model import LoadedModel
from lens.progress import bar
from lens.tokens import encode_ids, is_space, prompt_ids

__all__ = ["fit_translators"]  # the least-squares fit alone, for callers that fit synthetic block outputs

T = TypeVar("T")

RECIPE = "lstsq-kl-prompts-v3"
"""Names how the lens was fitted: a kept lens trained by another recipe is trained again."""
TOKENS = 512
"""Tokens of general text read (positions), beside the prompts."""
TEXT_SHARE = 0.1
"""The general text's share of the fit's weight; the prompts' read positions have the rest."""
HELD_OUT_PROMPTS = 64
"""Held-out prompts (of the corpus's held-out subjects, evenly spaced over its kinds) whose read positions the
recorded held-out KL reads: the full-vocabulary KL costs (blocks x vocabulary x width) a position."""
HELD_OUT_TEXT = 16
"""Held-out text positions the recorded held-out KL reads besides."""
WINDOW = 128
"""Tokens per text window: short, as the prompts the lens reads are."""
BATCH = 2
"""Text windows per forward pass: their logits at every position are held at once (Gemma 3: 1 MiB a position)."""
PROMPT_BATCH = 32
"""Prompts per forward pass (left-padded, sorted by length)."""
LEADS = 2
"""Whitespace tokens followed at most after a prompt (the model's own, as a read follows them)."""
CHUNK_ELEMENTS = 2**25
"""Logits held at once when measuring (128 MiB of float32): Gemma 3's 18 blocks x 262,144 tokens, 7 rows."""


@dataclass(frozen=True)
class Trained:
    """A tuned lens trained here (or found kept in the lens cache), with what it cost and how close it is."""

    lens: TunedLens
    folder: Path
    cached: bool
    """True where the lens was kept from an earlier training: nothing was trained."""
    seconds: float
    """The training's wall time (of the earlier training, where cached)."""
    tokens: int
    """Positions fitted on: the prompts' read positions and the general text's."""
    corpus: str
    held_out: tuple[float, ...]
    """Mean KL(output || lens) per block, in nats, at held-out prompts' read positions and held-out text positions
    (`HELD_OUT_PROMPTS`, `HELD_OUT_TEXT`), as training measured it: exact, full vocabulary, float32."""


@dataclass(frozen=True)
class HeldOutRows:
    """Held-out read positions: every block's output and the output's log-probabilities (full vocabulary)."""

    resid: torch.Tensor
    output_logp: torch.Tensor


def train_tuned(
    model: LoadedModel,
    corpus: Corpus | None = None,
    tokens: int = TOKENS,
    force: bool = False,
    say: Callable[[str], None] | None = None,
) -> Trained:
    """The model's tuned lens: the one kept for its weights and this recipe, or one trained now and kept
    (`lens.lenses.tuned.trained_folder`, written atomically; its recipe, corpus and held-out KL in its config). `say`
    gets the estimate line before the work."""
    corpus = corpus or default_corpus()
    folder = trained_folder(model)
    prompts = tuned_corpus.prompts()
    recipe = {
        "recipe": RECIPE,
        "corpus_sha256": corpus.sha256,
        "prompts_sha256": tuned_corpus.sha256(),
        "tokens": tokens,
        "text_share": TEXT_SHARE,
        "window": WINDOW,
        "ridge": tuned_fit.RIDGE,
        "top_k": tuned_fit.TOP_K,
        "tail_samples": tuned_fit.TAIL_SAMPLES,
        "steps": tuned_fit.STEPS,
        "lr": tuned_fit.LR,
        "batch_rows": tuned_fit.BATCH_ROWS,
    }
    kept = _kept(folder)
    if not force and kept and all(kept.get(k) == v for k, v in recipe.items()):
        return Trained(
            read_folder(folder, model, source=trained_provenance(folder)),
            folder,
            True,
            float(kept["seconds"]),
            int(kept["read_tokens"]),
            kept["corpus"],
            tuple(kept.get("held_out_kl", ())),
        )
    start = time.perf_counter()
    d = int(model.bridge.cfg.d_model)
    train_prompts = [p.text for p in prompts if not p.held_out]
    held = [p.text for p in prompts if p.held_out]
    held_prompts = [held[int(i * len(held) / HELD_OUT_PROMPTS)] for i in range(min(HELD_OUT_PROMPTS, len(held)))]
    windows = token_windows(model, corpus.train, tokens)
    batches = -(-len(train_prompts) // PROMPT_BATCH) + -(-len(windows) // BATCH)
    line = (
        f"training a tuned lens for {model.name} on {model.device}: {model.n_layers - 1} translators of {d} x {d}, "
        f"on {len(train_prompts)} prompts and {windows.numel():,} tokens of {corpus.name}, then "
        f"{tuned_fit.STEPS} KL steps; {{eta}}"
    )
    announce = _Announcer(batches, say, line)
    prompt_resid, prompt_ids, prompt_logp = _reduced(prompt_reads(model, train_prompts, announce))
    if len(prompt_resid) + windows.numel() - len(windows) < 2 * (d + 1):
        # A wide model (an 8B's 4,096) needs more rows than the default text gives: read on in the same text (the
        # windows so far are the first of the longer list), so the least squares stay determined without the ridge.
        windows = token_windows(model, corpus.train, 2 * (d + 1) - len(prompt_resid))
    text_resid, text_ids, text_logp = _reduced(_text_reads(model, windows, announce))
    reads = len(prompt_resid) + len(text_resid)
    if reads < 2 * (d + 1):
        raise LensError(
            f"{corpus.name} and the prompts give {reads} training positions for {model.name}: a tuned "
            f"lens of width {d} needs at least {2 * (d + 1)}: give a longer text (--tokens, --text)"
        )
    weight = torch.cat(
        [
            torch.full((len(prompt_resid),), (1 - TEXT_SHARE) / len(prompt_resid)),
            torch.full((len(text_resid),), TEXT_SHARE / len(text_resid)),
        ]
    )
    rows = Rows(
        torch.cat([prompt_resid, text_resid]),
        torch.cat([prompt_ids, text_ids]),
        torch.cat([prompt_logp, text_logp]),
        weight,
    )
    del prompt_resid, text_resid
    n_blocks = model.n_layers - 1
    maps = torch.empty(n_blocks, d + 1, d)
    parts = groups(len(weight), n_blocks, d)
    ticks = bar(range(len(parts) * tuned_fit.STEPS), desc=f"{model.name}: KL steps", unit="step")  # one bar for all
    for group in parts:
        start_maps = least_squares([(rows.resid, rows.weight)], blocks=group)
        maps[group.start : group.stop] = refine(
            model, rows, start_maps, blocks=group, progress=lambda steps: (s for s, _ in zip(steps, ticks))
        )
        del start_maps
    next(ticks, None)  # closes the bar
    del rows
    weight, bias = translators(maps)
    del maps
    lens = TunedLens(weight=weight, bias=bias, source=f"trained here ({folder})")
    measured = held_out_rows(model, held_prompts, token_windows(model, corpus.held_out, HELD_OUT_TEXT))
    held_out = tuple(round(v, 4) for v in rows_kl(model, lens.move, measured.resid, measured.output_logp).tolist())
    seconds = time.perf_counter() - start
    record = recipe | {
        "corpus": f"{len(train_prompts)} held-out prompts (lens/tuned_corpus.toml) and {corpus.name}",
        "read_tokens": reads,
        "seconds": round(seconds, 2),
        "device": model.device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "weights_id": model.weights_id,
        "held_out_positions": len(measured.resid),
        "held_out_kl": held_out,
    }
    write_folder(lens, folder, model, extra=record)
    return Trained(
        read_folder(folder, model, source=trained_provenance(folder)),
        folder,
        False,
        seconds,
        reads,
        record["corpus"],
        held_out,
    )


def _kept(folder: Path) -> dict | None:
    """What the kept lens's training recorded in its config, or None where there is none (or it cannot be read)."""
    try:
        return json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError):
        return None


class _Announcer:
    """Says the estimate line once, timed on the first batch of forward passes (`{eta}` in the line)."""

    def __init__(self, total: int, say: Callable[[str], None] | None, line: str) -> None:
        self.total, self.say, self.line, self.started = total, say, line, time.perf_counter()

    def done_one(self) -> None:
        if self.say is not None:
            took = time.perf_counter() - self.started
            self.say(
                self.line.format(
                    eta=f"about {took * self.total:.0f} s of forward passes (timed on the first "
                    f"of {self.total} batches), then the fit"
                )
            )
            self.say = None


def _reduced(reads: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batches of (block outputs, output logits) as block outputs (in the model's dtype) and the output's top tokens
    and their log-probabilities: a batch's full logits are dropped as soon as it is read (Gemma 3's are 1 MiB a
    position)."""
    resid, ids, logp = [], [], []
    for r, logits in reads:
        top = top_tokens(logits)
        resid.append(r.cpu())
        ids.append(top[0].cpu())
        logp.append(top[1].cpu())
    return torch.cat(resid), torch.cat(ids), torch.cat(logp)


def _stack(reads: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches of (block outputs, output logits) as two tensors, float32."""
    resid, logits = zip(*reads, strict=True)
    return torch.cat([r.float().cpu() for r in resid]), torch.cat([lg.float().cpu() for lg in logits])


def prompt_reads(
    model: LoadedModel, prompts: Sequence[str], announce: _Announcer | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch, every block's output and the output logits where a read follows each prompt: at its last
    token, and after each whitespace token the model writes first (up to `LEADS`), as the findings read it. The
    model as transformers built it, its decoder layers' outputs hooked; a whitespace token costs one position (the
    prompt's keys and values are kept)."""
    tokenizer = model.tokenizer
    hf = plain_view(model.hf_model)
    captured: list[torch.Tensor] = []

    def keep(module, args, output) -> None:
        captured.append((output[0] if isinstance(output, tuple) else output)[:, -1])

    hooks = [layer.register_forward_hook(keep) for layer in hf.get_decoder().layers]
    sequences = sorted((prompt_ids(tokenizer, p) for p in prompts), key=len)
    try:
        for start in bar(
            range(0, len(sequences), PROMPT_BATCH), desc=f"{model.name}: {len(sequences)} prompts", unit="batch"
        ):
            batch = encode_ids(tokenizer, sequences[start : start + PROMPT_BATCH], model.n_ctx)
            ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
            leading = torch.ones(len(ids), dtype=torch.bool, device=model.device)
            cache = None
            for lead in range(LEADS + 1):
                captured.clear()
                with torch.inference_mode():
                    out = hf(
                        input_ids=ids,
                        attention_mask=mask,
                        past_key_values=cache,
                        use_cache=lead < LEADS,
                        logits_to_keep=1,
                    )
                logits = out.logits[:, -1]
                yield torch.stack(captured, dim=1)[leading], logits[leading]
                ids = logits.argmax(-1, keepdim=True)
                leading &= torch.tensor(
                    [is_space(tokenizer.decode([t])) for t in ids[:, 0].tolist()], device=model.device
                )
                if not leading.any():
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                cache = out.past_key_values
            if announce is not None:
                announce.done_one()
    finally:
        for hook in hooks:
            hook.remove()


def _text_reads(
    model: LoadedModel, windows: torch.Tensor, announce: _Announcer | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for resid, logits in bar(
        block_outputs(model, windows, logits=True, batch_size=BATCH),
        total=-(-len(windows) // BATCH),
        desc=f"{model.name}: text",
        unit="batch",
    ):
        if announce is not None:
            announce.done_one()
        yield resid, logits


def held_out_rows(model: LoadedModel, prompts: Sequence[str], windows: torch.Tensor) -> HeldOutRows:
    """The held-out prompts' read positions and held-out text positions, with the output's full distribution."""
    text = [
        (resid[:HELD_OUT_TEXT], logits[:HELD_OUT_TEXT])
        for resid, logits in block_outputs(model, windows[:1], logits=True, batch_size=1)
    ]
    resid, logits = _stack([*prompt_reads(model, prompts), *text])
    return HeldOutRows(resid, torch.log_softmax(logits, dim=-1))


def token_windows(model: LoadedModel, text: str, tokens: int) -> torch.Tensor:
    """The text's first `tokens` read positions as (windows, WINDOW) token ids, each window opening with what the
    tokenizer puts first (BOS for Gemma, nothing for SmolLM2). Position 0 of each is not read: `WINDOW - 1` read
    positions a window."""
    tokenizer = model.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    special = tokenizer("x")["input_ids"]
    prefix = special[: len(special) - len(plain)] if special[len(special) - len(plain) :] == plain else []
    step = WINDOW - len(prefix)
    n_windows = min(-(-tokens // (WINDOW - 1)), len(ids) // step)
    if n_windows < 1:
        raise LensError(f"the text gives {len(ids)} tokens for {model.name}: give at least {WINDOW}")
    return torch.tensor([prefix + ids[i * step : (i + 1) * step] for i in range(n_windows)], dtype=torch.long)


def block_outputs(model: LoadedModel, windows: torch.Tensor, logits: bool = False, batch_size: int = BATCH):
    """Per batch of windows: every block's output at the read positions (rows, n_layers, d_model), and, with
    `logits`, the model's output logits there (rows, vocab); else None."""
    names = [f"blocks.{i}.hook_out" for i in range(model.n_layers)]
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size].to(model.device)
        with torch.inference_mode():
            out, cache = model.bridge.run_with_cache(
                batch, names_filter=names, **({} if logits else {"logits_to_keep": 1})
            )
        resid = torch.stack([cache[name][:, 1:] for name in names], dim=2)
        rows = resid.reshape(-1, model.n_layers, resid.shape[-1])
        yield rows, (out[:, 1:].reshape(-1, out.shape[-1]) if logits else None)
