"""What a read of the lens gives, and what it is read from: the records `lens.reads.trace` builds.

`Residuals` is one forward pass's block outputs and output logits at each prompt's last position (or, for a model
on NDIF, the lens reduced there: `Reduced`, for what `Wanted` asked); a `Trace` is one prompt's lens over every
block, with the tokens it `Watched`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lens.lenses.lenses import EXACT
from lens.tokens import AnswerToken


@dataclass(frozen=True)
class Residuals:
    """What one forward pass leaves for the lens, at each prompt's last position."""

    prompts: tuple[str, ...]
    read_after: tuple[str, ...]
    """Per prompt, the text the lens read at the end of: the prompt, plus the whitespace its answer starts
    with where that is a token of its own (the model writes it first; the lens follows the word after)."""
    resid: torch.Tensor | None
    """Block outputs (the residual stream after each block), shape (batch, n_layers, d_model); None where
    the lens was reduced where the model ran (a remote model: `reduced`)."""
    output_logits: torch.Tensor | None
    """The model's own output logits, shape (batch, vocab); None where the lens was reduced remotely."""
    backend: str = "bridge"
    """The execution backend that ran the forward pass (`lens.reads.backends.BACKENDS`)."""
    reduced: Reduced | None = None
    """The lens reduced where the model ran (a remote model), for what `Wanted` asked; None here."""


@dataclass(frozen=True)
class Wanted:
    """What the reads of a batch will ask for, said before its forward pass. A remote model reduces its lens
    where it runs (`lens.reads.reduce`) and sends back only this; a model here keeps its block outputs and needs none.
    """

    answers: Sequence[str | AnswerToken | None] | None = None
    """Per prompt, the answer `read` follows (as its `answers`)."""
    lenses: Mapping[str, Sequence[Sequence[str | AnswerToken]] | None] = field(
        default_factory=lambda: {EXACT.name: None}
    )
    """Lens name (`lens.lenses.registry.LENSES`) -> per prompt the words `read` watches through it (None: the answers
    only)."""
    top_k: int = 5
    temperatures: tuple[float, ...] = (1.0,)
    output_ids: Sequence[Sequence[int]] | None = None
    """Per prompt, more token ids whose output probability is read (`output_probabilities`)."""


@dataclass(frozen=True)
class Reduced:
    """A batch's lens reduced where the model ran: `lens.reads.reduce.reduce`'s tensors per lens over every prompt."""

    lenses: dict[str, dict[str, torch.Tensor]]
    ids: dict[str, tuple[tuple[int, ...], ...]]
    """Lens name -> per prompt the followed token ids, in the order of the reduced columns."""
    output_ids: tuple[tuple[int, ...], ...]
    """Per prompt, the ids of `out_extra_logits`' columns (of the first lens)."""
    top_k: int
    temperatures: tuple[float, ...]


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
    """Which lens read the residuals: "exact" (final norm, unembedding, soft-cap), "raw" (no norm), "tuned" (a
    translator per block, then the exact lens) or "jacobian" (a matrix per block, then the exact lens)."""
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
