"""A tuned lens measured on held-out text: the mean KL from the model's output to each lens, per block, on
paragraphs no lens was trained on (`lens train-tuned` prints it beside what the training recorded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from lens.lenses.lenses import EXACT, Lens
from lens.lenses.train_tuned import CHUNK_ELEMENTS, Trained, block_outputs, token_windows
from lens.lenses.tuned_text import Corpus, default_corpus
from lens.models.model import LoadedModel
from lens.progress import bar

HELD_OUT_TOKENS = 512
"""Held-out positions `held_out_kl` reads by default."""


@dataclass(frozen=True)
class HeldOut:
    """Mean KL(model output || lens) per block over held-out positions, in nats."""

    model: str
    lens: str
    kl: tuple[float, ...]
    """Per block, 0-based."""
    tokens: int


def held_out_kl(
    model: LoadedModel, lenses: tuple[Lens, ...] = (EXACT,), corpus: Corpus | None = None, tokens: int = HELD_OUT_TOKENS
) -> list[HeldOut]:
    """Each lens's mean KL from the model's own output distribution to the lens's, per block, over `tokens` read
    positions of the corpus's held-out paragraphs (never trained on): how close each block's reading is to the
    output on text the lens has not seen."""
    corpus = corpus or default_corpus()
    windows = token_windows(model, corpus.held_out, tokens)
    sums = {lens.name: torch.zeros(model.n_layers, dtype=torch.float64) for lens in lenses}
    rows = 0
    vocab = int(model.bridge.cfg.d_vocab)
    chunk = max(1, CHUNK_ELEMENTS // (model.n_layers * vocab))
    for resid, output in bar(
        block_outputs(model, windows, logits=True, batch_size=2),
        total=-(-len(windows) // 2),
        desc=f"{model.name}: held-out KL",
        unit="batch",
    ):
        for start in range(0, resid.shape[0], chunk):
            with torch.inference_mode():
                logp = torch.log_softmax(output[start : start + chunk].float(), dim=-1)[:, None]
                for lens in lenses:
                    logq = torch.log_softmax(lens.block_logits(model, resid[start : start + chunk]).float(), dim=-1)
                    sums[lens.name] += (logp.exp() * (logp - logq)).sum(-1).sum(0).cpu().double()  # MPS has no float64
        rows += resid.shape[0]
    return [HeldOut(model.name, name, tuple((total / rows).tolist()), rows) for name, total in sums.items()]


def report(trained: Trained, measured: list[HeldOut] | None = None) -> str:
    """What a training gave, in a few lines: where it is kept, its cost, the held-out KL its training recorded
    and, where measured, the held-out text's per lens."""
    cost = "kept from an earlier training" if trained.cached else "trained now"
    lines = [
        f"tuned lens {cost}: {trained.folder} ({trained.tokens:,} positions: {trained.corpus}; {trained.seconds:.1f} s)"
    ]
    tables = []
    if trained.held_out:
        tables.append(("held-out prompts and text, as training measured it", ["tuned"], [list(trained.held_out)]))
    if measured:
        tables.append(("held-out text", [m.lens for m in measured], [list(m.kl) for m in measured]))
    for title, names, columns in tables:
        lines.append(f"KL(output || lens) on {title}, nats, per block: " + ", ".join(names))
        for layer, values in enumerate(zip(*columns)):
            lines.append(f"  {layer:>3}  " + "  ".join(f"{v:8.3f}" for v in values))
    return "\n".join(lines)


def as_dict(measured: list[HeldOut]) -> list[dict]:
    """Held-out figures as JSON-ready dicts."""
    return [asdict(m) for m in measured]
