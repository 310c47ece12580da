"""Every claim can fail and can hold: each claim's `evaluate` on hand-built traces where it is false must
come out refuted, and where it is true must come out holds; every control can come out either way (a
synthetic case where it holds and one where it does not)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from findings.data import THRESHOLDS, Fact
from findings.evidence import judged as evidence_judged
from findings.evidence import thresholds, with_fidelity
from findings.model_findings import Candidates
from lens.lenses.lenses import EXACT, RAW, TunedLens
from lens.lenses.train_tuned import fit_translators
from lens.reads.generate import Continuation
from lens.reads.patching import Patching
from lens.reads.records import LayerLens, OutputLens, Residuals, Trace, Watched
from lens.reads.trace import read
from lens.tokens import AnswerToken
from suite.statistics import Label
from suite.verdicts import difference_verdict, with_control
from tests.conftest import random_model

N_FACTS, N_LAYERS = 60, 20
FACTS = tuple(
    Fact(
        id=f"f{i}",
        subject=f"Land{i}",
        answer=f"City{i}",
        origin="added",
        completion=f"The capital of Land{i} is",
        qa=f"Question: What is the capital of Land{i}? Answer:",
        reverse=f"City{i} is the capital of",
    )
    for i in range(N_FACTS)
)
OWN_ID = 999
"""The token the model writes where it does not answer (the controls of claims 1-4 follow it)."""


def claim(number_and_name: str):
    return importlib.import_module(f"findings.test_{number_and_name}")


def judged(
    module, findings, control: str | None = None, prompt_set: str = "capitals", section: str | None = None
) -> str:
    t = thresholds(module.CLAIM, prompt_set, section)
    kwargs = {"control": control} if control else {}
    return module.evaluate(findings, prompt_set, t, **kwargs).verdict


def watched(text: str, ranks, ps, rank_out: int = 1, p_out: float = 0.6, token_id: int | None = None) -> Watched:
    return Watched(
        text=text,
        token=text,
        p=tuple(ps),
        rank=tuple(ranks),
        p_output=p_out,
        rank_output=rank_out,
        whole=True,
        token_id=token_id,
    )


def make_trace(
    fact: Fact,
    answer_ranks,
    answer_ps,
    *,
    entropy=None,
    p_out: float = 0.6,
    rank_out: int = 1,
    out_entropy: float = 1.0,
    subject_ranks=None,
    other_subject_ranks=None,
    context_ranks=None,
    english_ranks=None,
    other_english_ranks=None,
    kl=None,
) -> Trace:
    """A trace whose followed token has the given ranks and probabilities (it is also the model's own token,
    OWN_ID, for the controls); the subject, another fact's subject and a word of the prompt (" capital") far
    down unless told otherwise."""
    entropy = entropy or [4.0] * N_LAYERS
    kl = kl or [1.0] * N_LAYERS
    layers = tuple(
        LayerLens(
            layer=i,
            depth=(i + 1) / N_LAYERS,
            top=(("x", 0.1),),
            p_answer=answer_ps[i],
            rank_answer=answer_ranks[i],
            entropy=entropy[i],
            kl_to_output=kl[i],
        )
        for i in range(N_LAYERS)
    )
    partner = FACTS[(FACTS.index(fact) + 1) % N_FACTS]
    return Trace(
        model="fake",
        prompt=fact.completion,
        read_after=fact.completion,
        lens="exact",
        answer=f" {fact.answer}",
        answer_token=f" {fact.answer}",
        answer_note=None,
        n_layers=N_LAYERS,
        temperature=1.0,
        layers=layers,
        output=OutputLens(top=(("x", 0.1),), p_answer=p_out, rank_answer=rank_out, entropy=out_entropy),
        final_max_abs_diff=0.0,
        output_max_abs_logit=10.0,
        watched=(
            watched(" own", answer_ranks, answer_ps, rank_out, p_out, token_id=OWN_ID),
            watched(f" {fact.subject}", subject_ranks or [5000] * N_LAYERS, [0.001] * N_LAYERS, 900, 0.0),
            watched(f" {partner.subject}", other_subject_ranks or [5000] * N_LAYERS, [0.001] * N_LAYERS, 900, 0.0),
            watched(" capital", context_ranks or [5000] * N_LAYERS, [0.001] * N_LAYERS, 900, 0.0),
            watched(
                f" {fact.answer}",
                english_ranks or [5000] * N_LAYERS,
                [0.001] * N_LAYERS,
                900,
                0.0,
                token_id=2000 + FACTS.index(fact),
            ),
            watched(
                f" {partner.answer}",
                other_english_ranks or [5000] * N_LAYERS,
                [0.001] * N_LAYERS,
                900,
                0.0,
                token_id=2000 + FACTS.index(partner),
            ),
        ),
    )


@dataclass(frozen=True)
class FakeReading:
    fact: Fact
    answered: str | None
    caveat: str | None = None
    lead_ids: tuple[int, ...] = ()

    @property
    def reply(self) -> Continuation:
        return Continuation(prompt="", ids=(OWN_ID,), text=" own", lead_ids=(), lead="", first=self.own)

    @property
    def own(self) -> AnswerToken:
        return AnswerToken(text=" own", token_id=OWN_ID, token=" own", n_tokens=1)

    @property
    def followed(self) -> AnswerToken:
        """Every fact's answer starts with OWN_ID here, so a wrong reply of OWN_ID is another fact's answer (the
        control of claims 1-4 counts it)."""
        return self.own


@dataclass(frozen=True)
class FakeRecord:
    n_layers: int = N_LAYERS


@dataclass
class FakeFindings:
    """What a claim reads about a model, built by hand: per form, the traces and whether each is answered."""

    forms: dict[str, tuple[Trace, ...]]
    answered: dict[str, bool] | None = None
    raw: dict[str, tuple[Trace, ...]] | None = None
    patchings: list | None = None
    attention_rows: dict | None = None
    name: str = "fake"
    lens_name: str = "exact"
    record: FakeRecord = FakeRecord()
    candidate_share: dict[str, float] | None = None
    """Per form, the answer's share of the candidates' probability (frame-free); its raw probability where unset."""

    def facts(self, prompt_set: str) -> tuple[Fact, ...]:
        return FACTS

    def readings(self, prompt_set: str, form: str):
        answered = (self.answered or {}).get(form, True)
        return tuple(FakeReading(fact, fact.answer if answered else None) for fact in FACTS)

    def form_lens(self, prompt_set: str, form: str, lens=None) -> tuple[Trace, ...]:
        return (self.raw if lens is RAW else self.forms)[form]

    def lens(self, prompt_set: str, lens=None) -> dict[str, tuple[Trace, ...]]:
        return self.raw if lens is RAW else self.forms

    def candidates(self, prompt_set: str, form: str) -> dict[str, Candidates]:
        share = (self.candidate_share or {}).get(form)
        return {
            fact.id: Candidates(share=trace.output.p_answer if share is None else share, mass=0.5, top=True)
            for fact, trace in zip(FACTS, self.forms[form])
        }

    def fidelity(self, prompt_set: str) -> dict[str, list[float]]:
        return {
            form: [float(np.mean([t.layers[i].kl_to_output for t in traces])) for i in range(N_LAYERS)]
            for form, traces in self.forms.items()
        }

    def patched(self):
        return iter(self.patchings)

    def attention(self):
        return self.attention_rows


def uniform(make, answered: bool = True, forms=("completion", "qa")) -> FakeFindings:
    """The same hand-built trace shape for every fact and form; answered (or not) in every form."""
    return FakeFindings(
        {form: tuple(make(fact) for fact in FACTS) for form in forms}, answered={form: answered for form in forms}
    )


def settling_at(layer: int, p_top: float = 0.6):
    """The followed token far down until `layer`, then top-1 to the end."""

    def make(fact):
        ranks, ps = [1000] * layer + [1] * (N_LAYERS - layer), [1e-4] * layer + [p_top] * (N_LAYERS - layer)
        return make_trace(fact, ranks, ps)

    return make


def test_convergence_depth_holds_at_80_percent_and_is_refuted_at_the_last_block():
    module = claim("01_convergence_depth")
    assert judged(module, uniform(settling_at(15))) == Label.HOLDS  # depth 16/20 = 0.8
    assert judged(module, uniform(settling_at(19))) == Label.REFUTED  # depth 1.0
    # The control: the token written on wrongly answered prompts settles at 80% too (holds) or not.
    assert judged(module, uniform(settling_at(15), answered=False), control="wrong answers") == Label.HOLDS
    assert judged(module, uniform(settling_at(19), answered=False), control="wrong answers") == Label.REFUTED


def test_convergence_depth_reads_the_notes_band_widened_by_half_a_block_only():
    """Every fact settles at the same block: the interval still has a block's width (half a block each side),
    and the band is the notes' 80-85% widened by half a block (here 0.775-0.875, 20 blocks)."""
    module = claim("01_convergence_depth")
    t = thresholds(module.CLAIM, "capitals")
    at_80 = module.evaluate(uniform(settling_at(15)), "capitals", t)
    assert at_80.ci == pytest.approx((0.775, 0.825)) and at_80.verdict == Label.HOLDS
    at_90 = module.evaluate(uniform(settling_at(17)), "capitals", t)  # 0.9: one block past; touches the band
    assert at_90.ci == pytest.approx((0.875, 0.925)) and at_90.verdict == Label.INCONCLUSIVE
    assert judged(module, uniform(settling_at(18))) == Label.REFUTED  # 0.95
    # The wider band of the past (0.75-0.90) is a sensitivity row, under which 0.9 holds.
    rows = evidence_judged(module.evaluate, module.CLAIM, uniform(settling_at(17)), "capitals").sensitivity
    assert [row.verdict for row in rows if row.threshold == "band" and row.value == [0.75, 0.90]] == [Label.HOLDS]


def test_a_blip_on_top_does_not_count_as_convergence():
    module = claim("01_convergence_depth")

    def blip(fact):
        return make_trace(fact, [1000] * 5 + [1] + [5] * 13 + [1], [0.1] * N_LAYERS)  # top-1 at 5, back at 19

    t = thresholds(module.CLAIM, "capitals")
    verdict = module.evaluate(uniform(blip), "capitals", t)
    assert verdict.value == 1.0 and verdict.verdict == Label.REFUTED


def phases(early_rank: int, entropy: float = 5.0):
    def make(fact):
        ranks = [early_rank] * 7 + [50] * 6 + [1] * 7
        return make_trace(fact, ranks, [1e-4] * 7 + [0.01] * 6 + [0.6] * 7, entropy=[entropy] * N_LAYERS)

    return make


def test_processing_phases_hold_with_noise_development_confidence_and_fail_without_noise():
    module = claim("02_processing_phases")
    assert judged(module, uniform(phases(2000))) == Label.HOLDS
    assert judged(module, uniform(phases(1))) == Label.REFUTED  # the answer on top early: no noise
    # A confident early lens (low entropy) is reported beside, never a gate.
    assert judged(module, uniform(phases(2000, entropy=0.5))) == Label.HOLDS
    assert judged(module, uniform(phases(2000), answered=False), control="wrong answers") == Label.HOLDS
    assert judged(module, uniform(phases(1), answered=False), control="wrong answers") == Label.REFUTED


def inside(p_inside: float):
    def make(fact):
        return make_trace(fact, [1] * N_LAYERS, [p_inside] * N_LAYERS, p_out=0.6)

    return make


def test_internal_confidence_compares_the_80_percent_block_with_the_output():
    module = claim("03_internal_confidence")
    assert judged(module, uniform(inside(0.9))) == Label.HOLDS
    assert judged(module, uniform(inside(0.3))) == Label.REFUTED
    assert judged(module, uniform(inside(0.9), answered=False), control="wrong answers") == Label.HOLDS
    assert judged(module, uniform(inside(0.3), answered=False), control="wrong answers") == Label.REFUTED


def test_final_layer_calibration_needs_less_answer_probability_at_the_output():
    module = claim("04_final_layer_calibration")
    assert judged(module, uniform(inside(0.9))) == Label.HOLDS
    assert judged(module, uniform(inside(0.3))) == Label.REFUTED
    assert judged(module, uniform(inside(0.9), answered=False), control="wrong answers") == Label.HOLDS
    assert judged(module, uniform(inside(0.3), answered=False), control="wrong answers") == Label.REFUTED


@pytest.mark.parametrize(
    "number_and_name, better",
    [
        ("05_prompt_format", "qa"),
        ("05_chat_format", "chat"),
        ("06_directional_asymmetry", "reverse"),
    ],
)
def test_paired_forms_compare_the_answers_own_probability(number_and_name, better):
    module = claim(number_and_name)

    def forms(p_better, answered_better=True):
        made = {
            better: tuple(make_trace(f, [1] * N_LAYERS, [0.5] * N_LAYERS, p_out=p_better) for f in FACTS),
            "completion": tuple(make_trace(f, [1] * N_LAYERS, [0.5] * N_LAYERS, p_out=0.4) for f in FACTS),
        }
        return FakeFindings(made, answered={better: answered_better, "completion": False})

    assert judged(module, forms(0.8)) == Label.HOLDS
    assert judged(module, forms(0.2)) == Label.REFUTED
    # A fact the model answers in neither form tells nothing: no data, not a verdict.
    assert judged(module, forms(0.8, answered_better=False)) == "no data"
    # An advantage below the practical minimum (claims.toml min_log_ratio) is no advantage: ln(0.44/0.4) < 0.25.
    assert judged(module, forms(0.44)) == Label.REFUTED


@pytest.mark.parametrize(
    "number_and_name, better, decides",
    [
        ("05_prompt_format", "qa", "raw"),
        ("06_directional_asymmetry", "reverse", "normalised"),
    ],
)
def test_a_frame_effect_is_told_from_a_knowledge_effect(number_and_name, better, decides):
    """The better form's answer has 2x the raw probability, but only because the worse frame spends its mass on
    " the": among the candidate answers both forms give it the same share (frame-free ratio 1). Claim 5 reads
    the raw probability (holds, marked where the frame-free ratio parts from it); claim 6, a knowledge bias,
    the frame-free one (refuted)."""
    module = claim(number_and_name)
    made = {
        better: tuple(make_trace(f, [1] * N_LAYERS, [0.5] * N_LAYERS, p_out=0.8) for f in FACTS),
        "completion": tuple(make_trace(f, [1] * N_LAYERS, [0.5] * N_LAYERS, p_out=0.4) for f in FACTS),
    }
    frame = FakeFindings(
        made, answered={better: True, "completion": True}, candidate_share={better: 0.9, "completion": 0.9}
    )
    verdict = module.evaluate(frame, "capitals", thresholds(module.CLAIM, "capitals"))
    assert verdict.verdict == (Label.HOLDS if decides == "raw" else Label.REFUTED)
    assert verdict.value == pytest.approx(np.log(2) if decides == "raw" else 0.0)
    assert any("parts from it" in caveat for caveat in verdict.caveats)
    knowledge = FakeFindings(
        made, answered={better: True, "completion": True}, candidate_share={better: 0.9, "completion": 0.45}
    )
    verdict = module.evaluate(knowledge, "capitals", thresholds(module.CLAIM, "capitals"))
    assert verdict.verdict == Label.HOLDS and not any("parts from it" in caveat for caveat in verdict.caveats)


def test_norm_correction_measures_kl_to_the_output():
    module = claim("08_norm_correction")
    exact = uniform(lambda fact: make_trace(fact, [5] * N_LAYERS, [0.1] * N_LAYERS, kl=[0.5] * N_LAYERS))
    far = {
        f: tuple(make_trace(fact, [5] * N_LAYERS, [0.1] * N_LAYERS, kl=[2.0] * N_LAYERS) for fact in FACTS)
        for f in ("completion", "qa")
    }
    closer_without = {
        f: tuple(make_trace(fact, [5] * N_LAYERS, [0.1] * N_LAYERS, kl=[0.2] * N_LAYERS) for fact in FACTS)
        for f in ("completion", "qa")
    }
    holds = FakeFindings(exact.forms, exact.answered, raw=far)  # 4x closer: holds (the notes give no size)
    assert judged(module, holds) == Label.HOLDS
    assert judged(module, FakeFindings(exact.forms, exact.answered, raw=closer_without)) == Label.REFUTED


def test_factual_recall_needs_the_answer_in_both_forms():
    module = claim("10_factual_recall")
    traces = uniform(lambda fact: make_trace(fact, [1] * N_LAYERS, [0.6] * N_LAYERS))
    assert judged(module, FakeFindings(traces.forms, {"completion": True, "qa": True})) == Label.HOLDS
    assert judged(module, FakeFindings(traces.forms, {"completion": True, "qa": False})) == Label.REFUTED


def test_factual_recall_reads_the_answer_whatever_the_replys_format():
    """A model that answers in neither form ("\\nA:") yet ranks the answer first among the candidates: recall by
    the first word is refuted; the format-free read beside it says every answer tops its candidates."""
    module = claim("10_factual_recall")
    traces = uniform(lambda fact: make_trace(fact, [1] * N_LAYERS, [0.6] * N_LAYERS))
    verdict = module.evaluate(
        FakeFindings(traces.forms, {"completion": False, "qa": False}), "capitals", thresholds(module.CLAIM, "capitals")
    )
    assert verdict.verdict == Label.REFUTED
    assert verdict.beside[-1].value == 1.0 and "whatever the reply" in verdict.beside[-1].label


def test_cross_architecture_compares_median_curves_of_the_same_facts():
    module = claim("11_cross_architecture")
    rising = np.linspace(0, 1, 20)
    noise = np.random.default_rng(0)

    def curves(shape):
        return {(f.id, "completion"): shape + noise.normal(0, 0.01, 20) for f in FACTS[:30]}

    t = thresholds(module.CLAIM, "capitals")
    assert module.evaluate({"a": curves(rising), "b": curves(rising + 0.05)}, "capitals", t).verdict == Label.HOLDS
    assert module.evaluate({"a": curves(rising), "b": curves(rising[::-1])}, "capitals", t).verdict == Label.REFUTED
    assert module.evaluate({"a": curves(rising)}, "capitals", t) is None  # one model: nothing to compare
    # Facts are counted, and only those every model answers in a common form.
    apart = module.evaluate({"a": curves(rising), "b": {(f.id, "qa"): rising for f in FACTS[:30]}}, "capitals", t)
    assert apart.n == 0 and apart.verdict == "no data"


def subject_at(layer, other_layer=None, context_layer=None):
    def make(fact):
        def at(i):
            return [5000] * N_LAYERS if i is None else [5000] * i + [1] + [5000] * (N_LAYERS - i - 1)

        return make_trace(
            fact,
            [1000] * 15 + [1] * 5,
            [1e-4] * 15 + [0.6] * 5,
            subject_ranks=at(layer),
            other_subject_ranks=at(other_layer),
            context_ranks=at(context_layer),
        )

    return make


def test_subject_before_answer():
    module = claim("12_subject_before_answer")
    assert judged(module, uniform(subject_at(8))) == Label.HOLDS
    assert judged(module, uniform(subject_at(None))) == Label.REFUTED
    # The controls: another country, or a word of the prompt (" capital"), surfaces before the answer just as
    # often (holds), or not.
    assert judged(module, uniform(subject_at(8, other_layer=6)), control="other subject") == Label.HOLDS
    assert judged(module, uniform(subject_at(8)), control="other subject") == Label.REFUTED
    assert judged(module, uniform(subject_at(8, context_layer=2)), control="in context") == Label.HOLDS
    assert judged(module, uniform(subject_at(8)), control="in context") == Label.REFUTED


def test_a_word_with_no_whole_token_gives_the_in_context_control_no_data(monkeypatch):
    module = claim("12_subject_before_answer")
    t = {**thresholds(module.CLAIM, "capitals"), "in_context": {"capitals": "Hauptstadt"}}
    assert module.evaluate(uniform(subject_at(8)), "capitals", t, control="in context").verdict == "no data"


def test_the_controls_of_claims_1_to_4_count_only_wrong_answers_that_are_answers():
    """A wrong reply that starts no fact's answer (" the") is no control: only another fact's answer is."""
    module = claim("03_internal_confidence")
    findings = uniform(inside(0.9), answered=False)
    assert module.evaluate(findings, "capitals", thresholds(module.CLAIM, "capitals"), control="wrong answers").n == 60

    class ElsewhereReading(FakeReading):
        @property
        def followed(self) -> AnswerToken:  # the answers start with another token than the reply
            return AnswerToken(text=" City", token_id=OWN_ID + 1, token=" City", n_tokens=1)

    class Elsewhere(FakeFindings):
        def readings(self, prompt_set, form):
            return tuple(ElsewhereReading(fact, None) for fact in FACTS)

    other = Elsewhere(findings.forms, findings.answered)
    verdict = module.evaluate(other, "capitals", thresholds(module.CLAIM, "capitals"), control="wrong answers")
    assert (verdict.n, verdict.verdict) == (0, "no data")


def test_the_difference_between_a_claim_and_its_control_is_tested_on_its_own_interval():
    module = claim("03_internal_confidence")
    t = thresholds(module.CLAIM, "capitals")
    claim_holds = module.evaluate(uniform(inside(0.9)), "capitals", t)
    control_refuted = module.evaluate(uniform(inside(0.3), answered=False), "capitals", t, control="wrong answers")
    control_holds = module.evaluate(uniform(inside(0.9), answered=False), "capitals", t, control="wrong answers")
    specific = difference_verdict(claim_holds, control_refuted)
    assert (specific.verdict, specific.value, specific.control) == (Label.HOLDS, 1.0, True)
    # By hand: the claim's exact interval for 60 of 60 at 97.5% has lower end 0.0125 ** (1/60); the control's
    # upper end for 0 of 60 is 1 - that: the difference's lower end is their difference.
    assert specific.ci[0] == pytest.approx(2 * 0.0125 ** (1 / 60) - 1, abs=1e-9)
    # 1.0 - 1.0: the interval straddles 0 (inconclusive); 0.0 - 1.0: at or below it (refuted).
    assert difference_verdict(claim_holds, control_holds).verdict == Label.INCONCLUSIVE
    claim_refuted = module.evaluate(uniform(inside(0.3)), "capitals", t)
    assert difference_verdict(claim_refuted, control_holds).verdict == Label.REFUTED
    # A control that holds where its claim does not is marked.
    assert any("holds where the claim does not" in c for c in with_control(claim_refuted, control_holds).caveats)
    assert not with_control(claim_holds, control_refuted).caveats
    # Claim 1's sign: wrong answers settling later than answers (control - claim) is the specific direction.
    depth = claim("01_convergence_depth")
    t1 = thresholds(depth.CLAIM, "capitals")
    early = depth.evaluate(uniform(settling_at(15)), "capitals", t1)
    late = depth.evaluate(uniform(settling_at(19), answered=False), "capitals", t1, control="wrong answers")
    assert difference_verdict(early, late, sign=-1).verdict == Label.HOLDS
    assert difference_verdict(early, late, sign=1).verdict == Label.REFUTED


def patching(handover: int) -> Patching:
    """Subject (position 3) restores everything before `handover`, the last position (5) from it on."""
    restored = [
        [0.0, 0.0, 0.0, 1.0 if layer < handover else 0.0, 0.0, 1.0 if layer >= handover else 0.0]
        for layer in range(N_LAYERS)
    ]
    return Patching(
        model="fake",
        clean="c",
        corrupt="x",
        answer=" A",
        tokens=("<s>",) * 6,
        p_clean=0.8,
        p_corrupt=0.1,
        restored=tuple(tuple(r) for r in restored),
        positions=tuple(range(6)),
    )


def patched(handover: int, settle: int):
    return [(fact, patching(handover), (3,), settling_at(settle)(fact)) for fact in FACTS]


def test_attention_to_the_subject_where_patching_moves_the_answer():
    module = claim("13_attention_to_subject")

    class Attention:
        def __init__(self, on_subject, at):
            spread = [0.5] + [0.1] * 5
            focused = list(spread)
            focused[3] = on_subject
            self.tokens = ("<s>", "The", " capital", " X", " of", " is")
            self.mean = [focused if layer == at else spread for layer in range(N_LAYERS)]

    def findings(at):
        return FakeFindings({}, patchings=patched(9, 15), attention_rows={f.id: Attention(0.6, at) for f in FACTS})

    assert judged(module, findings(9)) == Label.HOLDS  # attends to the subject at the handover block
    assert judged(module, findings(3)) == Label.REFUTED  # only elsewhere


def test_a_handover_before_the_last_block_holds_and_the_forced_one_at_it_does_not():
    module = claim("14_patching_handover")
    assert judged(module, FakeFindings({}, patchings=patched(9, 15)), section="patching") == Label.HOLDS
    assert judged(module, FakeFindings({}, patchings=patched(19, 19)), section="patching") == Label.REFUTED
    verdict = module.evaluate(
        FakeFindings({}, patchings=patched(9, 15)), "capitals", thresholds(module.CLAIM, "capitals", "patching")
    )
    assert verdict.beside[0].value == pytest.approx(0.5) and "middle third" in verdict.beside[0].label


def test_the_handover_comes_before_the_lens_settles_only_where_that_is_not_forced():
    module = claim("15_patching_before_convergence")
    assert judged(module, FakeFindings({}, patchings=patched(9, 15)), section="patching") == Label.HOLDS
    assert judged(module, FakeFindings({}, patchings=patched(17, 12)), section="patching") == Label.REFUTED
    # Where the lens settles only at the last block, "at or before" holds whatever patching does: no data.
    assert judged(module, FakeFindings({}, patchings=patched(17, 19)), section="patching") == "no data"


def test_the_prompt_sets_besides_the_capitals_share_the_error_rate(monkeypatch):
    """Bonferroni: the capitals are each claim's primary test at 95%; the other sets it runs on share the 5%
    between them. By hand: with 3 others each is at 1 - 0.05/3; with 1 other, at 95% but secondary."""
    import findings.evidence as evidence

    runs_on = {"four": ["capitals", "a", "b", "c"], "two": ["capitals", "a"], "no capitals": ["a", "b"]}
    monkeypatch.setattr(evidence, "prompt_sets_of", runs_on.__getitem__)
    assert evidence.level("four", "capitals") == (0.95, True)
    assert evidence.level("four", "b") == (pytest.approx(0.983333333), False)
    assert evidence.level("two", "a") == (pytest.approx(0.95), False)
    assert evidence.level("no capitals", "a") == (pytest.approx(0.975), False)
    monkeypatch.setitem(evidence.STATS, "confidence", 0.9)
    assert evidence.level("four", "c") == (pytest.approx(0.966666667), False)
    assert evidence.thresholds("four", "c")["confidence"] == pytest.approx(0.966666667)


def test_a_secondary_prompt_sets_interval_is_at_its_share_of_the_error_rate():
    # Claim 3 runs on every prompt set: the capitals and the files of findings/prompt_sets.
    others = len(list((Path(__file__).parents[1] / "findings" / "prompt_sets").glob("*.csv")))
    module = claim("03_internal_confidence")
    every = uniform(inside(0.9))  # 60 of 60 facts show it
    primary = module.evaluate(every, "capitals", thresholds(module.CLAIM, "capitals"))
    secondary = module.evaluate(every, "arithmetic", thresholds(module.CLAIM, "arithmetic"))
    assert (primary.confidence, primary.primary, secondary.primary) == (0.95, True, False)
    assert secondary.confidence == pytest.approx(1 - 0.05 / others)
    # Clopper-Pearson's lower end for n of n is (alpha / 2) ** (1 / n).
    assert primary.ci[0] == pytest.approx((0.05 / 2) ** (1 / N_FACTS), abs=1e-9)  # 0.940
    assert secondary.ci[0] == pytest.approx((0.05 / others / 2) ** (1 / N_FACTS), abs=1e-9)  # 0.923 for 3 others


def test_a_verdict_through_a_trained_tuned_lens_differs_where_the_logit_lens_reads_the_answer_late(tiny_tokenizer):
    """The synthetic case of issue 20, through the instrument and the claim: a 4-block model whose block outputs
    carry the answer, rotated away from the unembedding, from block 3 of 4 (75% of depth) on, and noise before.
    The logit lens reads the answer only at the last block (depth 1.0); a tuned lens fitted on the same
    construction reads it from 75%. Same model, same prompts: the lens moves the figure."""
    model = random_model("llama", tiny_tokenizer)
    n, d = model.n_layers, int(model.bridge.cfg.d_model)
    g = torch.Generator().manual_seed(3)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g))[0]

    def block_outputs(rows: int) -> torch.Tensor:
        y = torch.randn(rows, d, generator=g) * 3
        noise = [torch.randn(rows, d, generator=g) * 3 for _ in range(n - 2)]
        return torch.stack([*noise, 2 * y @ rotation + 0.01 * torch.randn(rows, d, generator=g), y], dim=1)

    weight, bias = fit_translators(block_outputs(2048).split(256))
    tuned = TunedLens(weight=weight, bias=bias)
    resid = block_outputs(N_FACTS)
    with torch.no_grad():
        output = EXACT.logits(model, resid[:, -1])
    tokens = output.argmax(-1).tolist()
    answers = [AnswerToken(text=f"t{i}", token_id=i, token=f"t{i}", n_tokens=1) for i in tokens]
    residuals = Residuals(
        prompts=tuple(f.completion for f in FACTS),
        read_after=tuple(f.completion for f in FACTS),
        resid=resid,
        output_logits=output,
    )
    module = claim("01_convergence_depth")
    verdicts = {}
    for lens in (EXACT, tuned):
        traces = tuple(read(model, residuals, answers, lens=lens))
        findings = FakeFindings({"completion": traces, "qa": traces}, lens_name=lens.name, record=FakeRecord(n))
        verdicts[lens.name] = module.evaluate(findings, "capitals", thresholds(module.CLAIM, "capitals"))
    # The lens moves the median depth from the last block to 75%. With 4 blocks a depth is known only to within
    # half a block (0.125), too coarse for the notes' 5-point band: neither reading decides.
    assert {name: (v.verdict, v.value) for name, v in verdicts.items()} == {
        "exact": (Label.INCONCLUSIVE, 1.0),
        "tuned": (Label.INCONCLUSIVE, 0.75),
    }
    assert verdicts["exact"].ci == pytest.approx((0.875, 1.125)) and verdicts["tuned"].ci == pytest.approx(
        (0.625, 0.875)
    )


def test_a_verdict_read_where_its_lens_is_far_from_the_output_is_marked():
    """claims.toml [fidelity]: a lens whose mean KL to the output exceeds the bound from the claim's deciding
    depth on marks the verdict; one within it does not, and the figure stands beside it either way."""
    module = claim("03_internal_confidence")
    t = thresholds(module.CLAIM, "capitals")
    bound = THRESHOLDS["fidelity"]["bound"]

    def kl_from_block(late: float):
        return uniform(
            lambda fact: make_trace(fact, [1] * N_LAYERS, [0.9] * N_LAYERS, kl=[50.0] * 15 + [late] * 5)
        )  # blocks 15-19: depth 0.8 on

    for late, marked in ((bound / 2, False), (bound * 2, True)):
        findings = kl_from_block(late)
        verdict = with_fidelity(module.evaluate(findings, "capitals", t), findings, 0.8)
        assert verdict.beside[-1].value == pytest.approx(late)  # the early blocks' 50 nats do not count
        assert any("lens not faithful here" in c for c in verdict.caveats) == marked


def english_leading(english, other=None):
    """The German answer far down early, rank 50 in the middle, top-1 in the final third; its English answer
    (and another fact's) at the given ranks."""

    def make(fact):
        return make_trace(
            fact,
            [1000] * 7 + [50] * 6 + [1] * 7,
            [1e-4] * 7 + [0.01] * 6 + [0.6] * 7,
            english_ranks=english,
            other_english_ranks=other,
        )

    return make


def test_latent_english_holds_where_english_leads_the_middle_and_german_takes_over_late():
    module = claim("16_latent_english")
    leads = [1000] * 7 + [2] * 6 + [5] * 7  # English ahead in the middle third, German top from block 13 (0.7)
    assert judged(module, uniform(english_leading(leads)), prompt_set="capitals_german") == Label.HOLDS
    assert judged(module, uniform(english_leading(None)), prompt_set="capitals_german") == Label.REFUTED
    early = [1000] * 3 + [2] * 4 + [100] * 13  # English leads only before the middle: German ahead from block 7
    assert judged(module, uniform(english_leading(early)), prompt_set="capitals_german") == Label.REFUTED
    # The control: another fact's English answer leads as often (holds), or not.
    assert (
        judged(
            module,
            uniform(english_leading(leads, other=leads)),
            control="other English answer",
            prompt_set="capitals_german",
        )
        == Label.HOLDS
    )
    assert (
        judged(module, uniform(english_leading(leads)), control="other English answer", prompt_set="capitals_german")
        == Label.REFUTED
    )
