"""Prompts and answers as the model's own tokenizer sees them (BOS and leading spaces included)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lens.errors import LensError


@dataclass(frozen=True)
class AnswerToken:
    """The token the lens follows for an answer string: the first token of it, in context after the prompt,
    that is not whitespace. Where the answer starts with whitespace-only tokens (" 7" is " " + "7" for
    digit-splitting tokenizers), the model writes those first; the lens then reads one position later,
    after the prompt and that whitespace (`lead`), and follows "7", never the space."""

    text: str
    """The answer as given, e.g. " Berlin"."""
    token_id: int
    token: str
    """The followed token decoded, e.g. " Berlin" or "7"."""
    n_tokens: int
    """How many tokens the answer takes from the followed one on."""
    lead: str = ""
    """Whitespace the answer starts with as tokens of their own; the lens reads after prompt + lead."""

    @property
    def note(self) -> str | None:
        """Says where the lens reads and what it follows when that is not simply the answer's one token."""
        notes = []
        if self.lead:
            notes.append(f"the answer starts with the whitespace token {self.lead!r}: the lens reads after it")
        if self.n_tokens > 1:
            notes.append(f"answer {self.text!r} is {self.n_tokens} tokens; the lens follows its first, {self.token!r}")
        return "; ".join(notes) or None


def is_word(token: str) -> bool:
    """Whether a decoded token carries a letter or digit (not whitespace or punctuation only)."""
    return any(c.isalnum() for c in token)


def encode(tokenizer: Any, prompts: list[str], n_ctx: int) -> dict[str, torch.Tensor]:
    """Left-padded input ids and attention mask, tokenized exactly as the model's own forward pass is."""
    return encode_ids(tokenizer, [prompt_ids(tokenizer, prompt) for prompt in prompts], n_ctx)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A prompt's token ids as the model's own forward pass sees them (BOS as the tokenizer decides)."""
    if not prompt.strip():
        raise LensError("the prompt is empty: give the text the model should continue")
    return tokenizer(prompt)["input_ids"]


def encode_ids(tokenizer: Any, sequences: list[list[int]], n_ctx: int) -> dict[str, torch.Tensor]:
    """Token id sequences left-padded into one batch (a prompt's ids and what the model wrote after them)."""
    longest = max(len(ids) for ids in sequences)
    if longest > n_ctx:
        raise LensError(f"the prompt is {longest} tokens, longer than the model's context of {n_ctx}: shorten it")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(sequences), longest), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, longest - len(ids) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def answer_token(tokenizer: Any, prompt: str, answer: str) -> AnswerToken:
    """The token of `answer` the lens follows after `prompt`: its first that is not whitespace.

    Tokenizing prompt+answer and taking what follows the prompt's tokens keeps the leading space
    exactly as the model would produce it (" Berlin" after "is" is one token where "Berlin" alone may
    be another). Where the prompt's tokens are not a prefix of the joined text's, the answer is
    tokenized on its own. Leading whitespace-only tokens become the `lead` the lens reads after; an
    answer whose first other token is punctuation is refused (the lens follows words).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    joined = tokenizer(prompt + answer)["input_ids"]
    if joined[: len(prompt_ids)] == prompt_ids:
        ids = joined[len(prompt_ids) :]
    else:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer.strip() or not ids:
        raise LensError(f"the answer {answer!r} tokenizes to nothing: give a word, e.g. ' Berlin'")
    skip = next(i for i, t in enumerate(ids) if tokenizer.decode([t]).strip())
    lead = tokenizer.decode(ids[:skip]) if skip else ""
    if lead and tokenizer(prompt + lead)["input_ids"] != prompt_ids + ids[:skip]:
        raise LensError(
            f"the answer {answer!r} starts with whitespace that does not tokenize on its own after "
            "the prompt: end the prompt with that whitespace instead"
        )
    token = tokenizer.decode([ids[skip]])
    if not is_word(token):
        raise LensError(f"the answer {answer!r} starts with the punctuation token {token!r}: give the word itself")
    return AnswerToken(text=answer, token_id=ids[skip], token=token, n_tokens=len(ids) - skip, lead=lead)


def followed_token(tokenizer: Any, prompt: str, answer: str) -> AnswerToken | None:
    """`answer_token`, or None where the answer cannot be followed after `prompt` (punctuation, nothing)."""
    try:
        return answer_token(tokenizer, prompt, answer)
    except LensError:
        return None


def is_space(token: str) -> bool:
    """Whether a decoded token is whitespace only (a space, a line break): what a model may write before its answer."""
    return not token.strip()


def after_lead(answer: str, lead: str) -> str:
    """The answer as the model would write it after `lead`: without its own leading space where the lead
    already ends in whitespace (after a line break the model writes "Berlin", not " Berlin")."""
    return answer.lstrip() if lead and lead[-1].isspace() else answer


def spells(text: str, words: Sequence[str]) -> str | None:
    """The first of `words` that `text` starts with after its leading whitespace, case-insensitively and
    as a whole word (" Berlin." spells "Berlin"; " Berliner" does not), or None."""
    start = text.lstrip().casefold()
    for word in words:
        bare = word.strip().casefold()
        if bare and start.startswith(bare) and not start[len(bare) : len(bare) + 1].isalnum():
            return word
    return None


def chat_prompt(tokenizer: Any, message: str) -> str:
    """`message` as the user's turn in the model's own chat template, ending where the assistant's reply
    begins (Qwen3: with thinking off, so the reply starts with the answer, not a <think> block)."""
    if not getattr(tokenizer, "chat_template", None):
        raise LensError("this model's tokenizer has no chat template: ask it without one")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def variants(word: str) -> list[str]:
    """Spellings under which a model may mean the same answer: with/without leading space, capitalised."""
    bare = word.strip()
    forms = [f" {bare}", bare, f" {bare.lower()}", bare.lower(), f" {bare.capitalize()}"]
    return list(dict.fromkeys(forms))
