"""The tuned lens's training prompts (lens/tuned_corpus.toml) share no fact with the prompt sets the claims are
judged on: no judged subject, answer or alias is in the file, no judged sum is among its prompts, and the held-out
subjects are never trained on."""

from __future__ import annotations

import re

from findings.data import SETS
from lens.lenses import tuned_corpus


def words(text: str) -> str:
    return f" {text.casefold()} "


def test_no_judged_subject_answer_or_alias_is_in_the_training_prompts():
    file_text = tuned_corpus.DATA.read_text(encoding="utf-8")
    built = "\n".join(p.text for p in tuned_corpus.prompts())
    found = []
    for name, facts in SETS.items():
        for fact in facts:
            if name == "arithmetic":  # a judged sum, not its digits: "2 + 5" is not in "12 + 5"
                pattern = rf"(?<!\d){re.escape(fact.subject)}(?!\d)"
                found += [(name, fact.subject) for text in (file_text, built) if re.search(pattern, text)]
                continue
            for word in {fact.subject, fact.answer, *(a for a in fact.aliases.split(";") if a)}:
                pattern = rf"(?<!\w){re.escape(word)}(?!\w)"
                found += [(name, word) for text in (file_text, built) if re.search(pattern, text, re.IGNORECASE)]
    assert not found, found


def test_the_arithmetic_is_other_operands_and_the_check_would_see_a_judged_sum():
    judged = {fact.subject for fact in SETS["arithmetic"]}
    ours = {f"{a} {op} {b}" for a, op, b in tuned_corpus.arithmetic_operands(tuned_corpus.data()["arithmetic"])}
    assert len(ours) == tuned_corpus.data()["arithmetic"]["count"] and not ours & judged
    assert re.search(r"(?<!\d)2 \+ 5(?!\d)", "Question: What is 2 + 5? Answer:")  # the pattern finds one
    assert not re.search(r"(?<!\d)2 \+ 5(?!\d)", "12 + 57 =")


def test_every_judged_form_has_prompts_and_one_subject_in_five_is_held_out():
    prompts = tuned_corpus.prompts()
    kinds = {p.kind for p in prompts}
    assert {
        "completion",
        "qa",
        "reverse",
        "german_completion",
        "german_qa",
        "arithmetic_completion",
        "arithmetic_qa",
        "history_completion",
        "history_qa",
    } <= kinds
    held = [p for p in prompts if p.held_out]
    assert 0.15 < len(held) / len(prompts) < 0.25
    trained = {p.text for p in prompts if not p.held_out}
    assert not trained & {p.text for p in held}
    assert len({p.text for p in prompts}) == len(prompts)  # no prompt twice
    for kind in kinds:
        assert any(p.held_out and p.kind == kind for p in prompts), kind
