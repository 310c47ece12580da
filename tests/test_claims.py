"""Every claim can fail and can hold: each claim's `evaluate` on hand-built traces where it is false must
come out refuted, and where it is true must come out holds; where a claim has a shuffled-answer control,
the control must not hold on the true case."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import pytest

from findings.data import Fact
from lens.lenses import RAW
from lens.patching import Patching
from lens.trace import LayerLens, OutputLens, Trace, Watched
from suite.statistics import HOLDS, REFUTED

N_FACTS, N_LAYERS = 60, 20
FACTS = tuple(
    Fact(id=f"f{i}", subject=f"Land{i}", answer=f"City{i}", origin="added", completion=f"The capital of Land{i} is",
         qa=f"Question: What is the capital of Land{i}? Answer:", reverse=f"City{i} is the capital of")
    for i in range(N_FACTS)
)


def claim(number_and_name: str):
    return importlib.import_module(f"findings.test_{number_and_name}")


def watched(text: str, ranks: list[int], ps: list[float], rank_out: int = 1, p_out: float = 0.6) -> Watched:
    return Watched(text=text, token=text, p=tuple(ps), rank=tuple(ranks), p_output=p_out, rank_output=rank_out,
                   whole=True)


def make_trace(fact: Fact, answer_ranks: list[int], answer_ps: list[float], *, entropy: list[float] | None = None,
               p_out: float = 0.6, rank_out: int = 1, out_entropy: float = 1.0, subject_ranks: list[int] | None = None,
               kl: list[float] | None = None, partner: Fact | None = None) -> Trace:
    """A trace whose answer follows the given ranks and probabilities; the control partner's answer and
    the subject far down unless told otherwise."""
    entropy = entropy or [4.0] * N_LAYERS
    kl = kl or [1.0] * N_LAYERS
    layers = tuple(
        LayerLens(layer=i, depth=(i + 1) / N_LAYERS, top=(("x", 0.1),), p_answer=answer_ps[i],
                  rank_answer=answer_ranks[i], entropy=entropy[i], kl_to_output=kl[i])
        for i in range(N_LAYERS)
    )
    partner = partner or FACTS[(FACTS.index(fact) + 1) % N_FACTS]
    subject_ranks = subject_ranks or [5000] * N_LAYERS
    return Trace(
        model="fake", prompt=fact.completion, read_after=fact.completion, lens="exact", answer=f" {fact.answer}",
        answer_token=f" {fact.answer}", answer_note=None, n_layers=N_LAYERS, temperature=1.0, layers=layers,
        output=OutputLens(top=(("x", 0.1),), p_answer=p_out, rank_answer=rank_out, entropy=out_entropy),
        final_max_abs_diff=0.0, output_max_abs_logit=10.0,
        watched=(
            watched(f" {fact.answer}", answer_ranks, answer_ps, rank_out, p_out),
            watched(f" {fact.subject}", subject_ranks, [0.001] * N_LAYERS, 900, 0.0),
            watched(f" {partner.answer}", [3000] * N_LAYERS, [1e-5] * N_LAYERS, 3000, 1e-5),
        ),
    )


@dataclass
class FakeFindings:
    """What a claim reads about a model, built by hand."""

    forms: dict[str, tuple[Trace, ...]]
    raw: dict[str, tuple[Trace, ...]] | None = None
    candidate_p: dict[str, float] | None = None
    patchings: list | None = None
    attention_rows: dict | None = None
    name: str = "fake"

    def facts(self, prompt_set: str) -> tuple[Fact, ...]:
        return FACTS

    def lens(self, prompt_set: str, lens=None) -> dict[str, tuple[Trace, ...]]:
        return self.raw if lens is RAW else self.forms

    def candidates(self, prompt_set: str, form: str) -> dict[str, tuple[float, float]]:
        return {fact.id: (self.candidate_p[form], 0.5) for fact in FACTS}

    def patched(self):
        return iter(self.patchings)

    def attention(self):
        return self.attention_rows

    def subject_positions(self):
        return {fact.id: (3,) for fact in FACTS}


def uniform(make) -> FakeFindings:
    """The same hand-built trace shape for every fact, in the completion and Q&A forms."""
    return FakeFindings({form: tuple(make(fact) for fact in FACTS) for form in ("completion", "qa")})


def settling_at(layer: int, p_top: float = 0.6):
    """The answer far down until `layer`, then top-1 to the end."""
    def make(fact):
        ranks = [1000] * layer + [1] * (N_LAYERS - layer)
        ps = [1e-4] * layer + [p_top] * (N_LAYERS - layer)
        return make_trace(fact, ranks, ps)
    return make


def judged(verdict) -> str:
    return verdict.verdict


def test_convergence_depth_holds_at_80_percent_and_is_refuted_at_the_last_block():
    module = claim("01_convergence_depth")
    assert judged(module.evaluate(uniform(settling_at(15)), "capitals")) == HOLDS  # depth 16/20 = 0.8
    assert judged(module.evaluate(uniform(settling_at(19)), "capitals")) == REFUTED  # depth 1.0
    assert judged(module.evaluate(uniform(settling_at(15)), "capitals", control=True)) != HOLDS


def test_a_blip_on_top_does_not_count_as_convergence():
    module = claim("01_convergence_depth")

    def blip(fact):
        ranks = [1000] * 5 + [1] + [5] * 13 + [1]  # top-1 at block 5, lost, back only at the last
        return make_trace(fact, ranks, [0.1] * N_LAYERS)

    verdict = module.evaluate(uniform(blip), "capitals")
    assert verdict.value == 1.0 and judged(verdict) == REFUTED


def test_processing_phases_hold_with_noise_development_confidence_and_fail_without_noise():
    module = claim("02_processing_phases")

    def phases(early_rank):
        def make(fact):
            ranks = [early_rank] * 7 + [50] * 6 + [1] * 7
            return make_trace(fact, ranks, [1e-4] * 7 + [0.01] * 6 + [0.6] * 7, entropy=[5.0] * N_LAYERS)
        return make

    assert judged(module.evaluate(uniform(phases(2000)), "capitals")) == HOLDS
    assert judged(module.evaluate(uniform(phases(1)), "capitals")) == REFUTED  # a confident early guess
    assert judged(module.evaluate(uniform(phases(2000)), "capitals", control=True)) != HOLDS


def test_internal_confidence_compares_the_80_percent_block_with_the_output():
    module = claim("03_internal_confidence")

    def at_80(p_inside):
        def make(fact):
            return make_trace(fact, [1] * N_LAYERS, [p_inside] * N_LAYERS, p_out=0.6)
        return make

    assert judged(module.evaluate(uniform(at_80(0.9)), "capitals")) == HOLDS
    assert judged(module.evaluate(uniform(at_80(0.3)), "capitals")) == REFUTED
    assert judged(module.evaluate(uniform(at_80(0.9)), "capitals", control=True)) != HOLDS


def test_final_layer_calibration_needs_flatter_output_and_less_answer_probability():
    module = claim("04_final_layer_calibration")

    def ending(p_out, out_entropy):
        def make(fact):
            return make_trace(fact, [1] * N_LAYERS, [0.9] * N_LAYERS, p_out=p_out, entropy=[0.5] * N_LAYERS,
                              out_entropy=out_entropy)
        return make

    assert judged(module.evaluate(uniform(ending(0.7, 1.0)), "capitals")) == HOLDS
    assert judged(module.evaluate(uniform(ending(0.95, 0.2)), "capitals")) == REFUTED
    assert judged(module.evaluate(uniform(ending(0.7, 1.0)), "capitals", control=True)) != HOLDS


@pytest.mark.parametrize("number_and_name, better, worse", [
    ("05_prompt_format", "qa", "completion"),
    ("05_chat_format", "chat", "completion"),
    ("06_directional_asymmetry", "reverse", "completion"),
])
def test_paired_forms_compare_normalised_probabilities(number_and_name, better, worse):
    module = claim(number_and_name)
    holds = FakeFindings({}, candidate_p={better: 0.8, worse: 0.4})
    refuted = FakeFindings({}, candidate_p={better: 0.2, worse: 0.4})
    assert judged(module.evaluate(holds, "capitals")) == HOLDS
    assert judged(module.evaluate(refuted, "capitals")) == REFUTED


def test_norm_correction_measures_kl_to_the_output():
    module = claim("08_norm_correction")
    exact = uniform(lambda fact: make_trace(fact, [5] * N_LAYERS, [0.1] * N_LAYERS, kl=[0.5] * N_LAYERS))
    far = {f: tuple(make_trace(fact, [5] * N_LAYERS, [0.1] * N_LAYERS, kl=[50.0] * N_LAYERS) for fact in FACTS)
           for f in ("completion", "qa")}
    assert judged(module.evaluate(FakeFindings(exact.forms, raw=far), "capitals")) == HOLDS
    assert judged(module.evaluate(FakeFindings(exact.forms, raw=exact.forms), "capitals")) == REFUTED


def test_factual_recall_needs_the_answer_on_top_in_both_forms():
    module = claim("10_factual_recall")
    top = uniform(lambda fact: make_trace(fact, [1] * N_LAYERS, [0.6] * N_LAYERS, rank_out=1))
    second = uniform(lambda fact: make_trace(fact, [2] * N_LAYERS, [0.2] * N_LAYERS, rank_out=2))
    assert judged(module.evaluate(top, "capitals")) == HOLDS
    assert judged(module.evaluate(second, "capitals")) == REFUTED


def test_cross_architecture_compares_median_curves():
    module = claim("11_cross_architecture")
    rising = np.tile(np.linspace(0, 1, 20), (30, 1)) + np.random.default_rng(0).normal(0, 0.01, (30, 20))
    assert judged(module.evaluate({"a": rising, "b": rising + 0.05}, "capitals")) == HOLDS
    assert judged(module.evaluate({"a": rising, "b": rising[:, ::-1]}, "capitals")) == REFUTED
    assert module.evaluate({"a": rising}, "capitals") is None  # one model: nothing to compare


def test_subject_before_answer():
    module = claim("12_subject_before_answer")

    def subject_at(layer):
        def make(fact):
            ranks = [1000] * 15 + [1] * 5
            subject = [5000] * N_LAYERS if layer is None else [5000] * layer + [1] + [5000] * (N_LAYERS - layer - 1)
            return make_trace(fact, ranks, [1e-4] * 15 + [0.6] * 5, subject_ranks=subject)
        return make

    assert judged(module.evaluate(uniform(subject_at(8)), "capitals")) == HOLDS
    assert judged(module.evaluate(uniform(subject_at(None)), "capitals")) == REFUTED
    assert judged(module.evaluate(uniform(subject_at(8)), "capitals", control=True)) != HOLDS


def test_attention_to_the_subject_as_the_answer_emerges():
    module = claim("13_attention_to_subject")
    traces = uniform(settling_at(15))

    class Attention:
        def __init__(self, on_subject):
            spread = [0.5] + [0.1] * 5
            spread[3] = on_subject
            self.tokens, self.mean = ("<s>", "The", " capital", " X", " of", " is"), [spread] * N_LAYERS

    focused = FakeFindings(traces.forms, attention_rows={f.id: Attention(0.6) for f in FACTS})
    even = FakeFindings(traces.forms, attention_rows={f.id: Attention(0.1) for f in FACTS})
    assert judged(module.evaluate(focused, "capitals")) == HOLDS
    assert judged(module.evaluate(even, "capitals")) == REFUTED


def patching(handover: int) -> Patching:
    """Subject (position 3) restores everything before `handover`, the last position (5) from it on."""
    restored = [[0.0, 0.0, 0.0, 1.0 if layer < handover else 0.0, 0.0, 1.0 if layer >= handover else 0.0]
                for layer in range(N_LAYERS)]
    return Patching(model="fake", clean="c", corrupt="x", answer=" A", tokens=("<s>",) * 6, p_clean=0.8,
                    p_corrupt=0.1, restored=tuple(tuple(r) for r in restored), positions=tuple(range(6)))


def patched(handover: int, settle: int):
    return [(fact, patching(handover), (3,), settling_at(settle)(fact)) for fact in FACTS]


def test_a_handover_must_come_before_the_last_third_not_just_somewhere():
    module = claim("14_patching_handover")
    assert judged(module.evaluate(FakeFindings({}, patchings=patched(9, 15)), "capitals")) == HOLDS
    # The crossing forced at the last block is no finding.
    assert judged(module.evaluate(FakeFindings({}, patchings=patched(19, 19)), "capitals")) == REFUTED


def test_the_handover_comes_before_the_lens_settles_only_where_that_is_not_forced():
    module = claim("15_patching_before_convergence")
    assert judged(module.evaluate(FakeFindings({}, patchings=patched(9, 15)), "capitals")) == HOLDS
    assert judged(module.evaluate(FakeFindings({}, patchings=patched(17, 12)), "capitals")) == REFUTED
    # Where the lens settles only at the last block, "at or before" holds whatever patching does: no data.
    assert module.evaluate(FakeFindings({}, patchings=patched(17, 19)), "capitals").n == 0
