"""What the model itself writes after a prompt: its greedy continuation, a few tokens long.

The lens reads where the model's answer starts: after the whitespace or line break the model writes first
(`lead`), at its first token that is not whitespace (`first`, a piece like " Bang" included). Whether the
continuation is a given answer is `spells`; what counts as an answer is the caller's business.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from lens.models.bridge import plain_view
from lens.models.model import Model
from lens.progress import bar
from lens.reads.reduce import margins as margins_of
from lens.tokens import AnswerToken, encode, is_space, spells

MAX_NEW_TOKENS = 8
"""Enough for the answers the findings follow (the longest, "Addis Ababa" or "van Beethoven", with a line
break before it and the character after it that ends the word)."""


@dataclass(frozen=True)
class Continuation:
    """The model's greedy continuation of one prompt, up to its end-of-sequence token (not included)."""

    prompt: str
    ids: tuple[int, ...]
    text: str
    """The continuation decoded, e.g. " Berlin.\\n\\nThe" or "\\n\\nA: Germany is"."""
    lead_ids: tuple[int, ...]
    """The whitespace-only tokens it starts with (a space, a line break): the lens reads after them."""
    lead: str
    first: AnswerToken | None
    """Its first token that is not whitespace, None where it ends (or stays whitespace) before one."""
    margins: tuple[float, ...] = ()
    """Per token written (and the end-of-sequence token that ended it, if one did), by how much the output
    probability of the token chosen beats the runner-up's."""
    deciding: int = 0
    """How many tokens decided its first word: the lead and the word's tokens."""

    @property
    def margin(self) -> float:
        """The smallest margin over the tokens that decided its first word: how near a tie decided where the
        lens reads, what it follows and what the reply answers (1.0 where no margin was kept)."""
        return min(self.margins[: self.deciding], default=1.0)

    def spells(self, words: Sequence[str]) -> str | None:
        """The first of `words` the continuation starts with (after its lead), as a whole word, or None."""
        return spells(self.text, words)


@torch.inference_mode()
def continue_greedy(
    model: Model,
    prompts: Sequence[str],
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 16,
    answers: Sequence[Sequence[str]] | None = None,
) -> list[Continuation]:
    """Each prompt's greedy continuation by the model (the Hugging Face model as transformers built it, so
    the bridge's hooks play no part), in batches of left-padded prompts; a model on NDIF's there, one job
    per batch (`lens.remote`). With `answers` (per prompt, the words that would answer it), a continuation
    ends where it is decided (`decided`): here generation stops there, on NDIF it is cut there, so both give
    the same continuation."""
    tokenizer = model.tokenizer
    words = list(answers) if answers is not None else [None] * len(prompts)
    config, rows, margins = generated(model, prompts, max_new_tokens, batch_size, answers)
    stop = set(_end_ids(config, tokenizer))
    return [
        _continued(tokenizer, prompt, row, margin, stop, w)
        for prompt, row, margin, w in zip(prompts, rows, margins, words)
    ]


@functools.singledispatch
def generated(
    model: Model, prompts: Sequence[str], max_new_tokens: int, batch_size: int, answers: Sequence[Sequence[str]] | None
) -> tuple[Any, list[list[int]], list[list[float]]]:
    """`continue_greedy`'s generation here: the generation config it ran under, and per prompt the token ids
    generated and their margins, each batch stopped once every row is decided (a model on NDIF generates there:
    `lens.remote.reads`)."""
    tokenizer = model.tokenizer
    words = list(answers) if answers is not None else [None] * len(prompts)
    hf = plain_view(model.hf_model)
    rows: list[list[int]] = []
    margins: list[list[float]] = []
    starts = range(0, len(prompts), batch_size)
    for start in bar(starts, desc=f"{model.name}: its own continuation of {len(prompts)} prompts", unit="batch"):
        chunk, chunk_words = list(prompts[start : start + batch_size]), words[start : start + batch_size]
        batch = {k: v.to(model.device) for k, v in encode(tokenizer, chunk, model.n_ctx).items()}
        width = batch["input_ids"].shape[1]
        until = None if answers is None else StoppingCriteriaList([_Decided(tokenizer, chunk_words, width)])
        out = hf.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            top_p=None,
            top_k=None,
            temperature=None,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=until,
            return_dict_in_generate=True,
            output_logits=True,
        )
        rows += out.sequences[:, width:].tolist()
        margins += margins_of(out.logits).tolist()
    return hf.generation_config, rows, margins


def decided(tokenizer, ids: Sequence[int], answers: Sequence[str]) -> int | None:
    """After how many of `ids` a continuation is decided, or None if it is not yet: its first word written and
    ended (a token that starts with anything but a letter or digit follows it), and none of `answers` still
    possible (each one either spelled with the character after it written, or departed from). Nothing later
    changes where the lens reads, what it follows, its margin or which answer it spells."""
    _, end = _first_word(tokenizer, ids)
    if end is None:
        return None
    bare = [word.strip().casefold() for word in answers]
    for k in range(end + 1, len(ids) + 1):
        written = tokenizer.decode(list(ids[:k])).lstrip().casefold()
        if not any(word.startswith(written) for word in bare if word):  # a prefix: still to be decided
            return k
    return None


class _Decided(StoppingCriteria):
    """Stops each row of a batch once its continuation is `decided` (transformers pads it from then on)."""

    def __init__(self, tokenizer, answers: Sequence[Sequence[str] | None], width: int) -> None:
        self.tokenizer, self.answers, self.width = tokenizer, answers, width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        rows = input_ids[:, self.width :].tolist()
        done = [
            words is not None and decided(self.tokenizer, row, words) is not None
            for row, words in zip(rows, self.answers)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _continued(
    tokenizer, prompt: str, row: list[int], margins: list[float], stop: set[int], answers: Sequence[str] | None = None
) -> Continuation:
    """A generated row up to its first end-of-sequence token (not included), with the margins of the tokens
    written and of the end token, where one came: it was a choice too. With `answers`, up to where it was
    decided instead, if that comes first (nothing after it was needed, or generated here)."""
    ids = tuple(row[: next((i for i, t in enumerate(row) if t in stop), len(row))])
    kept = len(ids) + 1
    cut = decided(tokenizer, ids, answers) if answers is not None else None
    if cut is not None:
        ids, kept = ids[:cut], cut
    return _continuation(tokenizer, prompt, ids, tuple(round(m, 6) for m in margins[:kept]))


def _first_word(tokenizer, ids: Sequence[int]) -> tuple[int | None, int | None]:
    """Where a continuation's first word starts (its first token that is not whitespace) and where it has
    ended (the next token that starts with anything but a letter or digit: "." or " and", which one changes no
    answer); None for either not written yet."""
    start = next((i for i, t in enumerate(ids) if not is_space(tokenizer.decode([t]))), None)
    if start is None:
        return None, None
    return start, next((j for j in range(start + 1, len(ids)) if not tokenizer.decode([ids[j]])[:1].isalnum()), None)


def _continuation(tokenizer, prompt: str, ids: tuple[int, ...], margins: tuple[float, ...] = ()) -> Continuation:
    start, end = _first_word(tokenizer, ids)
    skip = len(ids) if start is None else start
    lead_ids = ids[:skip]
    first = None
    if start is not None:
        token = tokenizer.decode([ids[start]])
        first = AnswerToken(text=token, token_id=ids[start], token=token, n_tokens=1)
    # A reply of whitespace or nothing was decided by the token that ended it.
    deciding = (len(ids) if end is None else end) if first is not None else len(ids) + 1
    return Continuation(
        prompt=prompt,
        ids=ids,
        text=tokenizer.decode(list(ids)),
        lead_ids=lead_ids,
        lead=tokenizer.decode(list(lead_ids)),
        first=first,
        margins=margins,
        deciding=deciding,
    )


def _end_ids(generation_config, tokenizer) -> list[int]:
    """The tokens that end a continuation: the generation config's and the tokenizer's end-of-sequence."""
    ends = getattr(generation_config, "eos_token_id", None)
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    if tokenizer.eos_token_id is not None:
        ends.append(tokenizer.eos_token_id)
    return ends
