"""`lens check` flags a run whose lens disagrees with the reference, and tolerates near-ties."""

import pytest
import torch

from lens.errors import LensError
from lens.models.loader import load
from lens.reads.check import CHECK_PROMPTS, check_device, compare, compare_models, lens_probabilities
from tests.perturb import zero_last_mlp
from tests.reference import reference_lens


@pytest.mark.slow
def test_another_dtype_is_a_different_computation_within_its_tolerance(smollm2):
    # Measured here: smollm2 in float16 is 5.3e-3 from float32 at most (tolerance 1e-2).
    result = compare_models(load("smollm2", device="cpu", dtype="float16"), smollm2)
    assert 0 < result.max_abs_diff <= result.tolerance
    assert result.agrees, result.summary()


@pytest.mark.slow
def test_a_changed_model_disagrees(smollm2):
    changed = zero_last_mlp(load("smollm2", device="cpu"))
    result = compare_models(changed, smollm2)
    assert not result.agrees and result.max_abs_diff > result.tolerance
    assert "DISAGREES" in result.summary()


def test_top1_may_swap_only_within_a_near_tie():
    class Model:  # bfloat16: tolerance 3e-2
        name, device, dtype = "m", "mps", torch.bfloat16

    tie = compare(Model, torch.tensor([[[0.49, 0.50, 0.01]]]), torch.tensor([[[0.50, 0.49, 0.01]]]), "ref")
    assert tie.top1_agreement == 1.0 and tie.agrees
    far = compare(Model, torch.tensor([[[0.20, 0.70, 0.10]]]), torch.tensor([[[0.70, 0.20, 0.10]]]), "ref")
    assert far.top1_agreement == 0.0 and not far.agrees


@pytest.mark.slow
def test_on_the_cpu_there_is_nothing_to_compare_with(smollm2):
    with pytest.raises(LensError, match="runs on the CPU already"):
        check_device(smollm2)


@pytest.mark.slow
def test_lens_probabilities_are_the_lens_of_plain_transformers_hooks(smollm2, twin_of):
    """Per check prompt and block, the softmax of an independent lens (tests/reference.py: forward hooks on a plain
    transformers copy of the weights), at the prompt's last position."""
    probs = lens_probabilities(smollm2)
    assert probs.shape == (len(CHECK_PROMPTS), smollm2.n_layers, len(smollm2.tokenizer))
    for row, prompt in enumerate(CHECK_PROMPTS):
        logits, _ = reference_lens(twin_of(smollm2), smollm2.tokenizer, prompt)
        torch.testing.assert_close(probs[row], logits.softmax(-1), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_lens_is_exact_on_an_embedded_model(smollm2):
    from lens.models.exact import exactness

    assert exactness(smollm2) < 1e-5  # measured: ~1e-6 of the logits' scale in float32


def test_every_load_checks_the_lens_is_exact_and_refuses_a_model_where_it_is_not(tiny_tokenizer):
    from lens.models.exact import exactness, require_exact
    from tests.conftest import random_model

    wrong = random_model("llama", tiny_tokenizer)
    require_exact(wrong)  # as built: exact
    wrong.bridge.cfg.output_logits_soft_cap = 1.0  # the lens would cap logits the model does not
    assert exactness(wrong) > 1e-2
    with pytest.raises(LensError, match=r"^the lens is not exact on tiny-llama \(cpu, float32\).*--device cpu"):
        require_exact(wrong)
