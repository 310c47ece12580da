"""Training a tuned lens here, and measuring it on held-out text: `lens train-tuned MODEL [--text FILE]`.

The tuned-lens objective is, per block, the KL divergence from the model's own output distribution to the
translated lens's, over the whole vocabulary. Here each translator is fitted in closed form instead, and the KL
only measures it (`held_out_kl`): per block, the affine map (least squares, a small ridge toward the identity) from
the block's output to the direction of the last block's output, the vector the final norm, unembedding and soft-cap
turn into the output (the final norm divides out its scale; only the direction is targeted, so no outlier token
outweighs the rest). Why not gradient steps on the KL itself, as tuned-lens does on a GPU: on this project's 2-core
CPU one full-vocabulary KL step over 256 tokens and SmolLM2's 29 translators took 15 s, and 6 steps (Adam, lr 3e-5,
from the least-squares fit) moved the held-out KL by -0.15 nats at block 0 and +0.4 at block 28 (an lr of 1e-3
diverged): not worth a CI run's minutes. The least-squares fit alone meets the goal with room to spare, measured by
`held_out_kl` (2-core CPU, float32, 8,255 training tokens): SmolLM2's held-out KL at block 0 goes from 14.3 nats
(logit lens) to 3.4, at block 28 from 2.76 to 0.18 (trained in 20 s on one thread); Gemma 3's at block 0 from 118.8
to 3.0, at block 16 from 0.52 to 0.23 (19 s); below the logit lens's at every block but the last, where both are 0.

The model runs once over the training text (windows of `WINDOW` tokens, BOS as its tokenizer decides); its block
outputs are kept (in its dtype, on the CPU), then each block's Gram matrices are summed (float64, on the CPU: MPS has
no float64) and solved, one block at a time, so memory stays at the block outputs plus one (d_model + 1)^2 pair. Position 0 of each window is left out (the
first token, or BOS: an attention sink whose residual is unlike any the lens reads, which is always later).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import torch

from lens.errors import LensError
from lens.lenses import EXACT, Lens, TunedLens
from lens.model import LoadedModel
from lens.progress import bar
from lens.tuned import CONFIG, read_folder, trained_folder, write_folder

T = TypeVar("T")

TOKENS = 8192
"""Training tokens read (positions): 13 per input of Gemma 3's 640 + 1. Measured on SmolLM2, held-out KL at
blocks 0 / 10 / 28: 4.63 / 2.76 / 0.21 nats from 2,048 tokens, 3.82 / 2.61 / 0.19 from 4,096, 3.60 / 2.56 / 0.19
from 8,001. The forward pass over them is most of the training: on one thread, SmolLM2 over 2,159 tokens
took 4.4 s and the fit 1.3 s."""
HELD_OUT_TOKENS = 512
"""Held-out positions `held_out_kl` reads by default."""
WINDOW = 128
"""Tokens per training window: short, as the prompts the lens reads are."""
BATCH = 8
"""Windows per forward pass."""
RIDGE = 1e-3
"""Ridge toward the identity, as a share of the Gram matrix's mean diagonal: keeps the solve well posed where a
residual direction barely varies over the text."""
RECIPE = "lstsq-direction-v1"
"""Names how the lens was fitted: a kept lens trained by another recipe is trained again."""
CHUNK_ELEMENTS = 2**25
"""Logits held at once when measuring (128 MiB of float32): Gemma 3's 18 blocks x 262,144 tokens, 7 rows."""
HELD_OUT_EVERY = 5
"""One paragraph in this many is held out (never trained on)."""


@dataclass(frozen=True)
class Corpus:
    """Text to train a tuned lens on, as paragraphs: every `HELD_OUT_EVERY`-th one is held out."""

    name: str
    paragraphs: tuple[str, ...]

    @property
    def train(self) -> str:
        return "\n\n".join(p for i, p in enumerate(self.paragraphs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)

    @property
    def held_out(self) -> str:
        return "\n\n".join(p for i, p in enumerate(self.paragraphs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\0".join(self.paragraphs).encode()).hexdigest()


def default_corpus() -> Corpus:
    """The Python language reference's topics as `help()` shows them (`pydoc_data.topics`, in every CPython).

    Why this text: it is on every machine that runs `lens` (no network, no download, the same bytes for the same
    Python), it is English prose with some code, as much of what these models were trained on is (the Pile,
    tuned-lens's corpus, mixes both), and it is about none of what the findings ask (capitals, arithmetic facts,
    history; no prompt set's text): the translators learn how each block's output maps to the model's output,
    not the answers the claims look for. Its limit: one register (technical prose); a lens fitted on it is
    measured on held-out topics of the same register (`held_out_kl`), not on the findings' prompts."""
    from pydoc_data.topics import topics

    return Corpus(name="pydoc_data.topics (the Python language reference)",
                  paragraphs=tuple(topics[key].strip() for key in sorted(topics)))


def file_corpus(path: str | Path) -> Corpus:
    """A text file as a corpus: paragraphs separated by blank lines (at least `HELD_OUT_EVERY`, so one can be
    held out)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LensError(f"cannot read {path} as UTF-8 text ({error.__class__.__name__}): give a text file") from None
    paragraphs = tuple(p.strip() for p in text.split("\n\n") if p.strip())
    if len(paragraphs) < HELD_OUT_EVERY:
        raise LensError(f"{path} has {len(paragraphs)} paragraphs: give at least {HELD_OUT_EVERY}, separated by "
                        "blank lines (one in five is held out)")
    return Corpus(name=str(path), paragraphs=paragraphs)


@dataclass(frozen=True)
class Trained:
    """A tuned lens trained here (or found kept in the lens cache), with what it cost."""

    lens: TunedLens
    folder: Path
    cached: bool
    """True where the lens was kept from an earlier training: nothing was trained."""
    seconds: float
    """The training's wall time (of the earlier training, where cached)."""
    tokens: int
    corpus: str


def train_tuned(model: LoadedModel, corpus: Corpus | None = None, tokens: int = TOKENS, force: bool = False,
                say: Callable[[str], None] | None = None) -> Trained:
    """The model's tuned lens: the one kept for its weights and this corpus, or one trained now and kept
    (`lens.tuned.trained_folder`, written atomically). `say` gets the estimate line before the work."""
    corpus = corpus or default_corpus()
    folder = trained_folder(model)
    recipe = {"recipe": RECIPE, "corpus_sha256": corpus.sha256, "tokens": tokens, "window": WINDOW, "ridge": RIDGE}
    kept = _kept(folder)
    if not force and kept and all(kept.get(k) == v for k, v in recipe.items()):
        return Trained(read_folder(folder, model, source=f"trained here ({folder})"), folder, True,
                       float(kept["seconds"]), int(kept["read_tokens"]), kept["corpus"])
    start = time.perf_counter()
    windows = token_windows(model, corpus.train, tokens)
    reads = windows.shape[0] * (windows.shape[1] - 1)
    if reads < 2 * (int(model.bridge.cfg.d_model) + 1):
        raise LensError(f"{corpus.name} gives {reads} training tokens for {model.name}: a tuned lens of width "
                        f"{model.bridge.cfg.d_model} needs at least {2 * (int(model.bridge.cfg.d_model) + 1)}: "
                        "give a longer text")
    batches = -(-len(windows) // BATCH)
    d = int(model.bridge.cfg.d_model)
    line = (f"training a tuned lens for {model.name} on {model.device}: {model.n_layers - 1} translators of {d} x {d} "
            f"by least squares over {reads:,} tokens of {corpus.name}; {{eta}}")
    outputs = (resid for resid, _ in block_outputs(model, windows))
    weight, bias = fit_translators(bar(_announced(outputs, batches, say, line), total=batches,
                                       desc=f"{model.name}: tuned lens", unit="batch"))
    seconds = time.perf_counter() - start
    lens = TunedLens(weight=weight, bias=bias, source=f"trained here ({folder})")
    record = recipe | {"corpus": corpus.name, "read_tokens": reads, "seconds": round(seconds, 2),
                       "device": model.device, "dtype": str(model.dtype).removeprefix("torch."),
                       "weights_id": model.weights_id}
    write_folder(lens, folder, model, extra=record)
    return Trained(lens, folder, False, seconds, reads, corpus.name)


def _kept(folder: Path) -> dict | None:
    """What the kept lens's training recorded, or None where there is none (or it cannot be read)."""
    try:
        if (folder / CONFIG).is_file():
            return json.loads((folder / "training.json").read_text())
    except (OSError, ValueError):
        pass
    return None


def token_windows(model: LoadedModel, text: str, tokens: int) -> torch.Tensor:
    """The text's first `tokens` read positions as (windows, WINDOW) token ids, each window opening with what the
    tokenizer puts first (BOS for Gemma, nothing for SmolLM2). Position 0 of each is not read: `WINDOW - 1` read
    positions a window."""
    tokenizer = model.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    special = tokenizer("x")["input_ids"]
    prefix = special[: len(special) - len(plain)] if special[len(special) - len(plain):] == plain else []
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
            out, cache = model.bridge.run_with_cache(batch, names_filter=names,
                                                     **({} if logits else {"logits_to_keep": 1}))
        resid = torch.stack([cache[name][:, 1:] for name in names], dim=2)
        rows = resid.reshape(-1, model.n_layers, resid.shape[-1])
        yield rows, (out[:, 1:].reshape(-1, out.shape[-1]) if logits else None)


def fit_translators(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tuned-lens translators (weight (n_layers - 1, d, d), bias (n_layers - 1, d)) fitted to batches of block
    outputs (rows, n_layers, d_model): per block, the ridge least-squares affine map from its output to the
    direction of the last block's (unit RMS). The block outputs are kept as they come (the model's dtype, on the
    CPU), then each block is fitted on its own: its sums of x x^T and x y^T over the batches in float64, solved,
    freed. One block's (d_model + 1)^2 float64 pair at a time, not every block's (Llama 3 8B: 0.27 GB, not 8.3 GB),
    for the block outputs' own size (8,255 rows of Llama 3 in bfloat16: 2.2 GB); the figures are those of summing
    every block at once, batch by batch in the same order."""
    kept = [resid.cpu() for resid in batches]
    if not kept:
        raise ValueError("no block outputs to fit translators to")
    n, d = kept[0].shape[1], kept[0].shape[2]
    directions = []
    for resid in kept:
        y = resid[:, -1].float()
        directions.append(y / y.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12))
    weight = torch.empty(n - 1, d, d)
    bias = torch.empty(n - 1, d)
    for block in range(n - 1):
        xx = torch.zeros(1, d + 1, d + 1, dtype=torch.float64)
        xy = torch.zeros(1, d + 1, d, dtype=torch.float64)
        for resid, y in zip(kept, directions):
            x = torch.cat([resid[:, block].float(), torch.ones(resid.shape[0], 1)], dim=-1)
            xx[0] += (x.T @ x).double()
            xy[0] += (x.T @ y).double()
        w, b = _fit(xx, xy)
        weight[block], bias[block] = w[0], b[0]
    return weight, bias


def _announced(batches: Iterable[T], total: int, say: Callable[[str], None] | None, line: str) -> Iterator[T]:
    """`batches`, saying `line` with the time the whole will take (`{eta}`), timed on the first batch."""
    started = time.perf_counter()
    for k, item in enumerate(batches):
        if k == 0 and say is not None:
            say(line.format(eta=f"about {(time.perf_counter() - started) * total:.0f} s (timed on the first of "
                                f"{total} batches)"))
        yield item


def _fit(xx: torch.Tensor, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge least-squares maps [h, 1] -> y per block, as tuned-lens's translators: h + A h + b = M^T [h, 1],
    so A = M[:d]^T - I and b = M[d]."""
    d = xy.shape[-1]
    ridge = RIDGE * xx.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(d + 1, dtype=xx.dtype)
    m = torch.linalg.solve(xx + ridge, xy)
    weight = m[:, :d].transpose(1, 2) - torch.eye(d, dtype=m.dtype)
    return weight.float().contiguous(), m[:, d].float().contiguous()


@dataclass(frozen=True)
class HeldOut:
    """Mean KL(model output || lens) per block over held-out positions, in nats."""

    model: str
    lens: str
    kl: tuple[float, ...]
    """Per block, 0-based."""
    tokens: int


def held_out_kl(model: LoadedModel, lenses: tuple[Lens, ...] = (EXACT,), corpus: Corpus | None = None,
                tokens: int = HELD_OUT_TOKENS) -> list[HeldOut]:
    """Each lens's mean KL from the model's own output distribution to the lens's, per block, over `tokens` read
    positions of the corpus's held-out paragraphs (never trained on): how close each block's reading is to the
    output on text the lens has not seen."""
    corpus = corpus or default_corpus()
    windows = token_windows(model, corpus.held_out, tokens)
    sums = {lens.name: torch.zeros(model.n_layers, dtype=torch.float64) for lens in lenses}
    rows = 0
    vocab = int(model.bridge.cfg.d_vocab)
    chunk = max(1, CHUNK_ELEMENTS // (model.n_layers * vocab))
    for resid, output in bar(block_outputs(model, windows, logits=True, batch_size=2), total=-(-len(windows) // 2),
                             desc=f"{model.name}: held-out KL", unit="batch"):
        for start in range(0, resid.shape[0], chunk):
            with torch.inference_mode():
                logp = torch.log_softmax(output[start : start + chunk].float(), dim=-1)[:, None]
                for lens in lenses:
                    logq = torch.log_softmax(lens.block_logits(model, resid[start : start + chunk]).float(), dim=-1)
                    sums[lens.name] += (logp.exp() * (logp - logq)).sum(-1).sum(0).cpu().double()  # MPS has no float64
        rows += resid.shape[0]
    return [HeldOut(model.name, name, tuple((total / rows).tolist()), rows) for name, total in sums.items()]


def report(trained: Trained, measured: list[HeldOut] | None = None) -> str:
    """What a training gave, in a few lines: where it is kept, its cost, and the held-out KL where measured."""
    cost = "kept from an earlier training" if trained.cached else "trained now"
    lines = [f"tuned lens {cost}: {trained.folder} ({trained.tokens:,} tokens of {trained.corpus}, "
             f"{trained.seconds:.1f} s)"]
    if measured:
        lines.append("held-out KL(output || lens), nats, per block: " + ", ".join(m.lens for m in measured))
        for layer, values in enumerate(zip(*(m.kl for m in measured))):
            lines.append(f"  {layer:>3}  " + "  ".join(f"{v:8.3f}" for v in values))
    return "\n".join(lines)


def as_dict(measured: list[HeldOut]) -> list[dict]:
    """Held-out figures as JSON-ready dicts."""
    return [asdict(m) for m in measured]
