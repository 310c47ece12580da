"""The held-out prompts a tuned lens is trained on here (`lens/tuned_corpus.toml`): the kinds of prompt the lens
is read on, over subjects no judged fact has, every `HELD_OUT_EVERY`-th subject held out to measure the lens on.

Data, not claims: the subjects and templates live in the TOML file; this module only expands them.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent.parent / "tuned_corpus.toml"
"""The corpus, with the package's other data files at the top of lens/ (beside models.toml)."""
HELD_OUT_EVERY = 5
"""One subject in this many (a country, an event, a sum) is held out: never trained on, measured on."""


@dataclass(frozen=True)
class Prompt:
    """One training prompt: the lens is fitted at its last position (and after the whitespace the model writes)."""

    text: str
    kind: str
    """Its form: "completion", "qa", "reverse", "german_completion", "german_qa", "arithmetic_completion",
    "arithmetic_qa", "history_completion" or "history_qa"."""
    held_out: bool


@cache
def data() -> dict:
    """The TOML file, parsed."""
    return tomllib.loads(DATA.read_text(encoding="utf-8"))


def prompts() -> tuple[Prompt, ...]:
    """Every prompt of the corpus, in a fixed order: per country its capital in every form and one more question
    per form (rotating over currency, language, largest city, continent), per region its capital in the English
    forms, then arithmetic, then history."""
    spec = data()
    out: list[Prompt] = []
    templates = spec["templates"]
    for i, (country, capital, german) in enumerate(spec["countries"]["rows"]):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        for form, forms in templates.items():
            chosen = forms[:1] + ([forms[1 + i % (len(forms) - 1)]] if len(forms) > 1 else [])
            for template in chosen:
                text = template.format(country=country, capital=capital, german=german)
                out.append(Prompt(text[:1].upper() + text[1:], form, held))
    regions = spec["regions"]
    for i, (region, capital) in enumerate(regions["rows"]):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        for form, template in zip(regions["forms"], regions["templates"], strict=True):
            out.append(Prompt(template.format(region=region, capital=capital), form, held))
    arithmetic = spec["arithmetic"]
    for i, (a, op, b) in enumerate(arithmetic_operands(arithmetic)):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        for form in ("completion", "qa"):
            out.append(Prompt(arithmetic[form].format(a=a, op=op, b=b), f"arithmetic_{form}", held))
    for i, (completion, qa) in enumerate(spec["history"]["rows"]):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        out.append(Prompt(completion, "history_completion", held))
        out.append(Prompt(qa, "history_qa", held))
    return tuple(out)


def arithmetic_operands(spec: dict) -> list[tuple[int, str, int]]:
    """`count` (a, operator, b) evenly spaced over those the file allows: a result of at least `min_result`, or
    an operand above `or_operand_above` and a positive result."""
    results = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    allowed = [
        (a, op, b)
        for op in spec["operators"]
        for a in range(2, spec["max_operand"] + 1)
        for b in range(2, spec["max_operand"] + 1)
        if (r := results[op](a, b)) >= spec["min_result"] or (max(a, b) > spec["or_operand_above"] and r > 0)
    ]
    step = len(allowed) / spec["count"]
    return [allowed[int(k * step)] for k in range(spec["count"])]


def sha256() -> str:
    """The prompts' digest: a lens trained on other prompts is another lens."""
    return hashlib.sha256(json.dumps([[p.text, p.kind, p.held_out] for p in prompts()]).encode()).hexdigest()
