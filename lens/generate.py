"""What the model itself writes after a prompt: its greedy continuation, a few tokens long.

The lens reads where the model's answer starts: after the whitespace or line break the model writes first
(`lead`), at its first token that is not whitespace (`first`, a piece like " Bang" included). Whether the
continuation is a given answer is `spells`; what counts as an answer is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lens.backends import plain_view
from lens.model import LoadedModel
from lens.progress import bar
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

    def spells(self, words: Sequence[str]) -> str | None:
        """The first of `words` the continuation starts with (after its lead), as a whole word, or None."""
        return spells(self.text, words)


@torch.inference_mode()
def continue_greedy(model: LoadedModel, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                    batch_size: int = 16) -> list[Continuation]:
    """Each prompt's greedy continuation by the model (the Hugging Face model as transformers built it, so
    the bridge's hooks play no part), in batches of left-padded prompts; a remote model's on NDIF, one job
    per batch (`lens.remote`)."""
    tokenizer = model.tokenizer
    if getattr(model, "remote", False):
        stop = set(_end_ids(model.generation_config, tokenizer))
        rows = model.continuations(prompts, max_new_tokens, batch_size)
        return [_continuation(tokenizer, prompt, _until(row, stop)) for prompt, row in zip(prompts, rows)]
    hf = plain_view(model.hf_model)
    stop = set(_end_ids(hf.generation_config, tokenizer))
    out: list[Continuation] = []
    starts = range(0, len(prompts), batch_size)
    for start in bar(starts, desc=f"{model.name}: its own continuation of {len(prompts)} prompts", unit="batch"):
        chunk = list(prompts[start : start + batch_size])
        batch = {k: v.to(model.device) for k, v in encode(tokenizer, chunk, model.n_ctx).items()}
        generated = hf.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                temperature=None, pad_token_id=tokenizer.pad_token_id)
        for prompt, row in zip(chunk, generated[:, batch["input_ids"].shape[1]:].tolist()):
            out.append(_continuation(tokenizer, prompt, _until(row, stop)))
    return out


def _until(row: list[int], stop: set[int]) -> tuple[int, ...]:
    """A generated row up to its first end-of-sequence token (not included)."""
    return tuple(row[: next((i for i, t in enumerate(row) if t in stop), len(row))])


def _continuation(tokenizer, prompt: str, ids: tuple[int, ...]) -> Continuation:
    skip = next((i for i, t in enumerate(ids) if not is_space(tokenizer.decode([t]))), len(ids))
    lead_ids = ids[:skip]
    first = None
    if skip < len(ids):
        token = tokenizer.decode([ids[skip]])
        first = AnswerToken(text=token, token_id=ids[skip], token=token, n_tokens=1)
    return Continuation(prompt=prompt, ids=ids, text=tokenizer.decode(list(ids)), lead_ids=lead_ids,
                        lead=tokenizer.decode(list(lead_ids)), first=first)


def _end_ids(generation_config, tokenizer) -> list[int]:
    """The tokens that end a continuation: the generation config's and the tokenizer's end-of-sequence."""
    ends = getattr(generation_config, "eos_token_id", None)
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    if tokenizer.eos_token_id is not None:
        ends.append(tokenizer.eos_token_id)
    return ends
