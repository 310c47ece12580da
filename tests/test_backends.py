"""The nnsight backend gives the bridge backend's lens, on every architecture and on both embedded models."""

from __future__ import annotations

import json

import pytest

from lens.backends import plain_view
from lens.check import compare_backends, lens_probabilities
from lens.cli import main
from lens.errors import LensError
from lens.trace import collect, trace

TOLERANCE = 1e-4
HELD_OUT = [  # not the prompts the exactness tests use: padded together, one with a leading-space answer
    "Rome is the capital of",
    "Question: What is the capital of Italy? Answer:",
    "Berlin is the capital of Germany. Paris is the capital of",
]
HELD_OUT_ANSWERS = [" Italy", " Rome", " France"]
ARITHMETIC, SEVEN = "Question: What is 3 + 4? Answer:", " 7"  # the lens reads after " ", follows "7"


def max_probability_difference(model, prompts) -> float:
    """max |p_nnsight - p_bridge| over prompts, layers and the whole vocabulary (exact lens)."""
    return float((lens_probabilities(model, tuple(prompts), "nnsight") - lens_probabilities(model, tuple(prompts)))
                 .abs().max())


def assert_same_traces(ours, theirs) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert (a.read_after, a.answer_token) == (b.read_after, b.answer_token)
        for x, y in zip(a.layers, b.layers, strict=True):
            assert abs(x.p_answer - y.p_answer) <= TOLERANCE and abs(x.kl_to_output - y.kl_to_output) <= 1e-3
            assert [t for t, _ in x.top] == [t for t, _ in y.top]
        assert abs(a.output.p_answer - b.output.p_answer) <= TOLERANCE


def test_nnsight_gives_the_bridge_lens_on_random_models(tiny_model):
    # Measured: 0 (bitwise equal) on every architecture, float32 on the CPU.
    assert max_probability_difference(tiny_model, HELD_OUT) <= TOLERANCE
    nn, bridge = collect(tiny_model, HELD_OUT, backend="nnsight"), collect(tiny_model, HELD_OUT)
    assert nn.backend == "nnsight" and (nn.output_logits - bridge.output_logits).abs().max() <= TOLERANCE


def test_nnsight_gives_the_bridge_lens_on_embedded_models(real_model):
    # Measured: 0 on smollm2 and gemma3 (float32, CPU), padded batch included.
    assert max_probability_difference(real_model, HELD_OUT + [ARITHMETIC]) <= TOLERANCE
    prompts, answers = HELD_OUT + [ARITHMETIC], HELD_OUT_ANSWERS + [SEVEN]
    ours = trace(real_model, prompts, answers, backend="nnsight")
    assert ours[-1].read_after == ARITHMETIC + " " and ours[-1].answer_token == "7"
    assert_same_traces(ours, trace(real_model, prompts, answers))
    result = compare_backends(real_model)
    assert result.agrees and result.max_abs_diff <= TOLERANCE, result.summary()
    assert result.summary().startswith(f"{real_model.name} through nnsight on cpu (float32) agrees with the bridge")


def test_nnsight_runs_the_model_as_transformers_built_it_not_the_bridge(tiny_tokenizer, monkeypatch):
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    bridge_modules = {id(m) for m in model.hf_model.modules()}
    view = plain_view(model.hf_model)
    assert not any(isinstance(m, GeneralizedComponent) for m in view.modules())
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.hf_model.parameters()}  # no copy of weights
    assert {id(m) for m in model.hf_model.modules()} == bridge_modules  # the bridge's tree is untouched
    calls = []
    original_call = GeneralizedComponent.__call__
    monkeypatch.setattr(GeneralizedComponent, "__call__",
                        lambda self, *a, **k: calls.append(self) or original_call(self, *a, **k))
    collect(model, HELD_OUT[:1], backend="nnsight")
    assert calls == []
    collect(model, HELD_OUT[:1])
    assert calls  # the bridge backend runs through its components


def test_a_backend_not_known_is_refused(tiny_model):
    with pytest.raises(LensError, match="unknown backend 'pytorch': use one of bridge, nnsight"):
        collect(tiny_model, HELD_OUT[:1], backend="pytorch")


# ---- the command line ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, answer", [(HELD_OUT[1], " Rome"), (ARITHMETIC, SEVEN)])
def test_trace_json_through_nnsight_equals_the_default(capsys, smollm2, prompt, answer):
    outputs = []
    for backend in ([], ["--backend", "nnsight"]):
        assert main(["trace", "smollm2", prompt, "--answer", answer, "--json", "--device", "cpu", *backend]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    default, nn = outputs
    for key in ("read_after", "answer_token", "n_layers"):
        assert nn[key] == default[key]
    for a, b in zip(nn["layers"], default["layers"], strict=True):
        assert abs(a["p_answer"] - b["p_answer"]) <= TOLERANCE and a["rank_answer"] == b["rank_answer"]
        assert all(abs(p - q) <= TOLERANCE and s == t for (s, p), (t, q) in zip(a["top"], b["top"], strict=True))
    assert abs(nn["output"]["p_answer"] - default["output"]["p_answer"]) <= TOLERANCE


def test_check_compares_the_backends(capsys, smollm2):
    assert main(["check", "smollm2", "--backend", "nnsight", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smollm2 through nnsight on cpu (float32) agrees with the bridge backend: max |Δp| = ")
