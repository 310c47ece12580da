"""lens.models.spot: a block whose computation goes wrong after the load check passed is caught by the spot check
(and named); a clean model passes it. On the CPU, a forward hook stands in for a wrong kernel."""

import pytest
import torch

from lens.errors import LensError
from lens.models.exact import require_exact
from lens.models.spot import require_agreement, spot_check
from lens.tokens import prompt_ids


def wrong_kernel(model, block: int):
    """Every later forward pass of `block` returns 20% too much, as the MPS bug's 10-30% of scale does."""
    layer = model.hf_model.get_decoder().layers[block]
    original = getattr(layer, "original_component", layer)
    return original.register_forward_hook(
        lambda module, args, output: (output[0] * 1.2, *output[1:]) if isinstance(output, tuple) else output * 1.2
    )


def test_a_clean_model_agrees_block_by_block(tiny_model):
    check = spot_check(tiny_model, prompt_ids(tiny_model.tokenizer, "The capital of Germany is"))
    assert check.agrees and check.worst < 1e-5


def test_a_block_gone_wrong_after_the_load_check_is_caught_and_named(tiny_model):
    require_exact(tiny_model)  # the load check passes
    handle = wrong_kernel(tiny_model, 2)
    try:
        check = spot_check(tiny_model, prompt_ids(tiny_model.tokenizer, "The capital of Germany is"))
        assert not check.agrees and check.worst_block == 2 and check.worst >= 0.1
        with pytest.raises(LensError, match="refusing the results: .* block 2 "):
            require_agreement(tiny_model, prompt_ids(tiny_model.tokenizer, "Berlin is the capital of"))
    finally:
        handle.remove()
    assert spot_check(tiny_model, prompt_ids(tiny_model.tokenizer, "x y")).agrees


@pytest.mark.slow
def test_the_spot_check_on_a_real_model(smollm2):
    ids = prompt_ids(smollm2.tokenizer, "The capital of Germany is")
    assert spot_check(smollm2, ids).agrees
    handle = wrong_kernel(smollm2, 17)
    try:
        assert spot_check(smollm2, ids).worst_block == 17
    finally:
        handle.remove()
    assert torch.is_grad_enabled()
