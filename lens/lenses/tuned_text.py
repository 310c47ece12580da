"""The general text a tuned lens is trained on beside the prompts, and measured on: paragraphs, one in
`HELD_OUT_EVERY` held out (`lens.lenses.train_tuned` reads it; `lens train-tuned --text FILE` gives another)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lens.errors import LensError

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
    Python), it is English prose with some code, as much of what these models were trained on is, and it is
    about none of what the findings ask (capitals, arithmetic facts, history; no prompt set's text). It is the
    general text beside the prompts (`TEXT_SHARE` of the weight): alone, one register, a lens fitted on it was
    4 to 5 nats from the output on the judged capitals at SmolLM2's block 22 and Gemma 3's block 15."""
    from pydoc_data.topics import topics

    return Corpus(
        name="pydoc_data.topics (the Python language reference)",
        paragraphs=tuple(topics[key].strip() for key in sorted(topics)),
    )


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
        raise LensError(
            f"{path} has {len(paragraphs)} paragraphs: give at least {HELD_OUT_EVERY}, separated by "
            "blank lines (one in five is held out)"
        )
    return Corpus(name=str(path), paragraphs=paragraphs)
