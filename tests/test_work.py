"""findings.work: the cost model's counts of each phase's work (forward passes, tokens, rows unembedded) against a
run's own counts, taken by hooks on the model while the findings' own code computes every artefact of a run, on
a tiny random-weight Llama (benchmarks.scale, the bench's own runner); and what a selection of tests computes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.scale import Hooks, floor, measure
from findings.data import SETS, THRESHOLDS
from findings.work import Readings, artefacts, claim_of, plan_of, reads_of
from lens.lenses.lenses import TunedLens
from lens.lenses.train_tuned import LEADS
from suite.estimate import Shape, Work
from tests.conftest import random_model

FACTS = 3
"""Facts per prompt set: one batch each, and patching partners among the capitals."""


@pytest.fixture(scope="module")
def run(tiny_tokenizer, tiny_folder):
    """Every phase of the findings on a tiny Llama, as the simulation runs them (patching every capital); the
    session resolves the model's spec from a saved folder of the same architecture."""
    model = random_model("llama", tiny_tokenizer)
    return model, measure(model, str(tiny_folder), simulate=True, facts=FACTS, lenses=[TunedLens.name])


def test_the_counts_of_every_phase_are_the_runs_own(run):
    _, result = run
    phases = {phase["name"]: phase for phase in result["phases"] if phase["planned"]}
    assert {"continuations", "collect", "read exact", "tuned lens", "grid", "attention", "patching"} <= set(phases)
    for name, phase in phases.items():
        counted = {k: phase["counted"][k] for k in ("passes", "tokens", "unembedded")}
        planned = {k: phase["planned"][k] for k in ("passes", "tokens", "unembedded")}
        if name == "tuned lens":  # its prompts' whitespace leads are counted at the most (the model decides them)
            assert all(counted[k] <= planned[k] for k in ("passes", "tokens")), (counted, planned)
            assert planned["passes"] <= (1 + LEADS) * counted["passes"], (counted, planned)
        else:
            assert counted == planned, name
    assert phases["patching"]["counted"]["passes"] > 0  # every capital patched, as the simulation says


def test_a_phase_s_floor_is_its_passes_and_rows_and_no_more(run):
    """The bench's floor of a phase runs the passes the hooks saw, shape for shape, and unembeds the rows the
    phase planned: hooks on the model, counting while it runs, see exactly that (its plain passes unembed
    nothing; a floor that ran the whole causal LM would unembed every position)."""
    model, result = run
    floored = [phase for phase in result["phases"] if phase["planned"]]
    assert floored and all(phase["floor_seconds"] > 0 for phase in floored if phase["shapes"])
    for phase in floored:
        seen = {(rows, tokens): k for rows, tokens, k in phase["shapes"]}
        hooks = Hooks(model)
        try:
            floor(model, seen, phase["planned"]["unembedded"])
        finally:
            work, shapes = hooks.take()
            hooks.remove()
        assert shapes == seen, phase["name"]
        assert (work.passes, work.tokens) == (phase["counted"]["passes"], phase["counted"]["tokens"]), phase["name"]
        assert work.unembedded == phase["planned"]["unembedded"], phase["name"]


def test_before_a_run_the_counts_bound_what_the_run_decides(run):
    """Without the run's readings, continuations are counted at their longest and every capital as answered: at
    least the run's own; what does not depend on the readings is the same."""
    model, result = run
    counted = {phase["name"]: phase["counted"] for phase in result["phases"] if phase["planned"]}
    shape = Shape(
        n_layers=model.n_layers,
        d_model=int(model.bridge.cfg.d_model),
        vocab=int(model.bridge.cfg.d_vocab),
        parameters=1,
        embedding=0,
        weight_bytes=1,
    )
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("findings.work.SETS", {name: facts[:FACTS] for name, facts in SETS.items()})
        patched.setattr("findings.data.SETS", {name: facts[:FACTS] for name, facts in SETS.items()})
        before = plan_of(model.tokenizer, shape, False, [TunedLens.name], None)
    phases: dict[str, Work] = {}
    for name, work in before.artefacts.items():
        phase = _phase(name)
        phases[phase] = phases.get(phase, Work()) + work
    for name in ("grid", "attention"):
        assert phases[name].passes == counted[name]["passes"] and phases[name].tokens == counted[name]["tokens"]
    # the tuned lens's prompts: before a run every prompt is counted as followed through each whitespace lead
    for name in ("continuations", "patching", "tuned lens"):
        assert phases[name].passes >= counted[name]["passes"] and phases[name].tokens >= counted[name]["tokens"]
    # the lens reads after the model's own lead: before a run none is known, so collect counts the prompts alone
    assert phases["collect"].passes == counted["collect"]["passes"]
    leads = sum(result["lead_tokens"].values())
    assert phases["collect"].tokens <= counted["collect"]["tokens"] <= phases["collect"].tokens + leads * 16


def _phase(artefact: str) -> str:
    from findings.work import phase_of

    parts = artefact.split()
    return phase_of(tuple(parts) if len(parts) > 1 else parts[0])


def test_a_selection_computes_only_what_its_tests_read():
    every = artefacts(chat=True, lenses=["tuned"])
    assert ("readings", "capitals", "chat") in every and "patching" in every and ("tuned", "lens") in every
    one = artefacts(
        chat=True,
        lenses=["tuned"],
        tests=["findings/test_08_norm_correction.py::test_norm_correction[smollm2-arithmetic]"],
    )
    assert {key[0] if isinstance(key, tuple) else key for key in one} == {"readings", "exclusions", "residuals", "lens"}
    assert {key[1] for key in one} == {"arithmetic"}
    assert ("lens", "arithmetic", "qa", "raw") in one and ("tuned", "lens") not in one
    tuned = artefacts(
        chat=False,
        lenses=["tuned"],
        tests=["findings/test_01_convergence_depth.py::test_convergence_depth[llama3-capitals-tuned]"],
    )
    assert ("tuned", "lens") in tuned and ("lens", "capitals", "reverse", "tuned") in tuned
    assert "patching" not in tuned and "grid" not in tuned
    patching = artefacts(
        chat=False, lenses=[], tests=["findings/test_14_patching_handover.py::test_patching_handover[gemma3-capitals]"]
    )
    assert {"subject_positions", "patching", "notes_patching"} <= set(patching)
    assert claim_of("findings/test_layer_snapshots.py::test_layer_snapshot[smollm2-capitals]") is None
    assert (
        claim_of("findings/test_14_patching_handover.py::test_patching_handover[gemma3-capitals]")
        == "patching_handover"
    )


def test_what_a_new_claim_reads_besides_the_lens_is_counted_from_its_own_section(monkeypatch):
    """A claim's section says what it reads (claims.toml `reads`); the count lists no claim of its own."""
    new = "findings/test_99_attends.py::test_attends[smollm2-capitals]"
    assert claim_of(new) is None and "attention" not in artefacts(chat=False, lenses=[], tests=[new])
    monkeypatch.setitem(THRESHOLDS, "attends", {"prompt_sets": ["capitals"], "reads": ["attention", "candidates"]})
    counted = artefacts(chat=False, lenses=[], tests=[new])
    assert claim_of(new) == "attends" and {"subject_positions", "attention"} <= set(counted)
    assert ("candidates", "capitals", "qa") in counted and "patching" not in counted
    monkeypatch.setitem(THRESHOLDS, "attends", {"reads": ["telepathy"]})
    with pytest.raises(ValueError, match=r"\[attends\] reads telepathy: name only candidates, chat"):
        reads_of("attends")


def test_readings_change_the_counts_where_the_run_decides(run):
    """Counted with a reading where every continuation ended after one token, continuations take one pass a batch."""
    model, result = run
    shape = Shape(
        n_layers=model.n_layers,
        d_model=64,
        vocab=int(model.bridge.cfg.d_vocab),
        parameters=1,
        embedding=0,
        weight_bytes=1,
    )
    keys = [("readings", "capitals", "completion")]
    readings = Readings(
        leads={}, steps={("capitals", "completion"): [1] * len(SETS["capitals"])}, usable={}, answered=[]
    )
    from findings.work import Counter

    short = Counter(model.tokenizer, shape.n_layers, shape.d_model, shape.vocab, readings=readings).work(keys[0])
    longest = Counter(model.tokenizer, shape.n_layers, shape.d_model, shape.vocab).work(keys[0])
    batches = -(-len(SETS["capitals"]) // 16)
    assert short.passes == batches and longest.passes == 8 * batches
    assert longest.tokens - short.tokens == 7 * len(SETS["capitals"])
    assert replace(short, passes=0, tokens=0, unembedded=0) == Work()


@pytest.mark.slow  # trains a tuned lens of width 1,536
def test_a_model_wider_than_its_reads_is_counted_reading_on_in_the_text(tiny_tokenizer, tmp_path, monkeypatch):
    """A tuned lens of width d needs 2(d + 1) read positions (an 8B's 8,194); where the corpus's prompts and the
    default text give fewer, training reads on in the text, and the cost model counts that text: the run's own
    counts stay within what it planned, and not far under."""
    import torch
    import transformers as hf

    from findings.work import Counter
    from lens.lenses import tuned_corpus
    from lens.lenses.train_tuned import TOKENS, WINDOW, train_tuned
    from lens.models.loader import wrap
    from lens.models.registry import LocalFolder
    from tests.conftest import SIZES

    width = 1792  # wider than the corpus reads (843 prompts since the regions: 1,536 was not)
    prompts = sum(not p.held_out for p in tuned_corpus.prompts())
    assert 2 * (width + 1) > prompts * (1 + LEADS) + -(-TOKENS // (WINDOW - 1)) * (
        WINDOW - 1
    )  # reads on, however many leads
    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = hf.LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1, pad_token_id=2, **{**SIZES, "hidden_size": width}
    )
    torch.manual_seed(0)
    hf_model = hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    spec = LocalFolder(name="tiny-wide", path=Path(tiny_tokenizer), title="random wide llama")
    model = wrap(spec, hf_model, tokenizer, device="cpu", weights_id="random-wide")
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path))
    hooks = Hooks(model)
    try:
        trained = train_tuned(model, force=True)
    finally:
        counted, _ = hooks.take()
        hooks.remove()
    planned = Counter(model.tokenizer, model.n_layers, width, len(tokenizer)).work((TunedLens.name, "lens"))
    assert trained.tokens >= 2 * (width + 1)
    assert counted.passes <= planned.passes and counted.tokens <= planned.tokens, (counted, planned)
    assert planned.tokens <= 1.5 * counted.tokens, (counted, planned)
    assert planned.gram_rows >= (model.n_layers - 1) * trained.tokens
