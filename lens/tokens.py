"""Prompts and answers as the model's own tokenizer sees them (BOS and leading spaces included)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lens.errors import LensError


@dataclass(frozen=True)
class AnswerToken:
    """The token the lens follows for an answer string: its first token in context after the prompt."""

    text: str
    """The answer as given, e.g. " Berlin"."""
    token_id: int
    token: str
    """That token decoded, e.g. " Berlin"."""
    n_tokens: int
    """How many tokens the whole answer takes after the prompt."""

    @property
    def note(self) -> str | None:
        """Says so when the answer is longer than one token and only its first is followed."""
        if self.n_tokens == 1:
            return None
        return f"answer {self.text!r} is {self.n_tokens} tokens; the lens follows its first, {self.token!r}"


def encode(tokenizer: Any, prompts: list[str], n_ctx: int) -> dict[str, torch.Tensor]:
    """Left-padded input ids and attention mask, tokenized exactly as the model's own forward pass is."""
    for prompt in prompts:
        if not prompt.strip():
            raise LensError("the prompt is empty: give the text the model should continue")
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    longest = int(encoded["attention_mask"].sum(-1).max())
    if longest > n_ctx:
        raise LensError(
            f"the prompt is {longest} tokens, longer than the model's context of {n_ctx}: shorten it"
        )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def answer_token(tokenizer: Any, prompt: str, answer: str) -> AnswerToken:
    """The first token of `answer` as it follows `prompt`.

    Tokenizing prompt+answer and taking what follows the prompt's tokens keeps the leading space
    exactly as the model would produce it (" Berlin" after "is" is one token where "Berlin" alone may
    be another). Where the prompt's tokens are not a prefix of the joined text's, the answer is
    tokenized on its own.
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    joined = tokenizer(prompt + answer)["input_ids"]
    if joined[: len(prompt_ids)] == prompt_ids:
        ids = joined[len(prompt_ids):]
    else:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer.strip() or not ids:
        raise LensError(f"the answer {answer!r} tokenizes to nothing: give a word, e.g. ' Berlin'")
    return AnswerToken(
        text=answer, token_id=ids[0], token=tokenizer.decode([ids[0]]), n_tokens=len(ids)
    )


def variants(word: str) -> list[str]:
    """Spellings under which a model may mean the same answer: with/without leading space, capitalised."""
    bare = word.strip()
    forms = [f" {bare}", bare, f" {bare.lower()}", bare.lower(), f" {bare.capitalize()}"]
    return list(dict.fromkeys(forms))
