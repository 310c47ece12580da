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
from lens.reduce import margins as margins_of
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
def continue_greedy(model: LoadedModel, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                    batch_size: int = 16) -> list[Continuation]:
    """Each prompt's greedy continuation by the model (the Hugging Face model as transformers built it, so
    the bridge's hooks play no part), in batches of left-padded prompts; a remote model's on NDIF, one job
    per batch (`lens.remote`)."""
    tokenizer = model.tokenizer
    if getattr(model, "remote", False):
        stop = set(_end_ids(model.generation_config, tokenizer))
        rows, margins = model.continuations(prompts, max_new_tokens, batch_size)
        return [_continued(tokenizer, prompt, row, margin, stop) for prompt, row, margin in zip(prompts, rows, margins)]
    hf = plain_view(model.hf_model)
    stop = set(_end_ids(hf.generation_config, tokenizer))
    out: list[Continuation] = []
    starts = range(0, len(prompts), batch_size)
    for start in bar(starts, desc=f"{model.name}: its own continuation of {len(prompts)} prompts", unit="batch"):
        chunk = list(prompts[start : start + batch_size])
        batch = {k: v.to(model.device) for k, v in encode(tokenizer, chunk, model.n_ctx).items()}
        generated = hf.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                temperature=None, pad_token_id=tokenizer.pad_token_id,
                                return_dict_in_generate=True, output_logits=True)
        rows = generated.sequences[:, batch["input_ids"].shape[1]:].tolist()
        for prompt, row, margin in zip(chunk, rows, margins_of(generated.logits).tolist()):
            out.append(_continued(tokenizer, prompt, row, margin, stop))
    return out


def _continued(tokenizer, prompt: str, row: list[int], margins: list[float], stop: set[int]) -> Continuation:
    """A generated row up to its first end-of-sequence token (not included), with the margins of the tokens
    written and of the end token, where one came: it was a choice too."""
    ids = tuple(row[: next((i for i, t in enumerate(row) if t in stop), len(row))])
    return _continuation(tokenizer, prompt, ids, tuple(round(m, 6) for m in margins[: len(ids) + 1]))


def _continuation(tokenizer, prompt: str, ids: tuple[int, ...], margins: tuple[float, ...] = ()) -> Continuation:
    skip = next((i for i, t in enumerate(ids) if not is_space(tokenizer.decode([t]))), len(ids))
    lead_ids = ids[:skip]
    first = None
    if skip < len(ids):
        token = tokenizer.decode([ids[skip]])
        first = AnswerToken(text=token, token_id=ids[skip], token=token, n_tokens=1)
    # The first word's tokens end where a token starts with anything but a letter or digit ("." or " and": which
    # one ends it changes no answer); a reply of whitespace or nothing was decided by the token that ended it.
    end = next((j for j in range(skip + 1, len(ids)) if not tokenizer.decode([ids[j]])[:1].isalnum()), len(ids))
    deciding = end if first is not None else len(ids) + 1
    return Continuation(prompt=prompt, ids=ids, text=tokenizer.decode(list(ids)), lead_ids=lead_ids,
                        lead=tokenizer.decode(list(lead_ids)), first=first, margins=margins, deciding=deciding)


def _end_ids(generation_config, tokenizer) -> list[int]:
    """The tokens that end a continuation: the generation config's and the tokenizer's end-of-sequence."""
    ends = getattr(generation_config, "eos_token_id", None)
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    if tokenizer.eos_token_id is not None:
        ends.append(tokenizer.eos_token_id)
    return ends
