"""Activation patching, batched over every (layer, position), equals one patch at a time done with
plain transformers forward hooks."""

import pytest
import torch

from lens.errors import LensError
from lens.reads.patching import patch_residuals

pytestmark = pytest.mark.slow  # every test here loads an embedded model

CLEAN, CORRUPT, ANSWER = "The capital of Germany is", "The capital of France is", " Berlin"


@pytest.fixture(scope="module")
def patched(smollm2):
    return patch_residuals(smollm2, CLEAN, CORRUPT, ANSWER)


def one_patch(twin, tokenizer, layer, position, answer_id):
    """Clean block output at (layer, position) into the corrupted run, by a forward hook."""
    clean = tokenizer([CLEAN], return_tensors="pt")
    corrupt = tokenizer([CORRUPT], return_tensors="pt")
    store = {}
    block = twin.model.layers[layer]
    handle = block.register_forward_hook(
        lambda m, i, o: store.setdefault("clean", (o[0] if isinstance(o, tuple) else o).clone())
    )
    with torch.inference_mode():
        p_clean = twin(**clean).logits[0, -1].softmax(-1)[answer_id]
    handle.remove()

    def replace(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[:, position] = store["clean"][:, position]
        return output

    with torch.inference_mode():
        p_corrupt = twin(**corrupt).logits[0, -1].softmax(-1)[answer_id]
        handle = block.register_forward_hook(replace)
        p_patched = twin(**corrupt).logits[0, -1].softmax(-1)[answer_id]
        handle.remove()
    return float((p_patched - p_corrupt) / (p_clean - p_corrupt))


def test_batched_patching_matches_single_patches_with_plain_hooks(smollm2, patched, twin_of):
    twin = twin_of(smollm2)
    answer_id = smollm2.tokenizer(CLEAN + ANSWER)["input_ids"][len(smollm2.tokenizer(CLEAN)["input_ids"])]
    n_pos = len(patched.tokens)
    for layer, position in [(0, n_pos - 2), (10, n_pos - 2), (20, n_pos - 1), (29, n_pos - 1), (15, 0)]:
        expected = one_patch(twin, smollm2.tokenizer, layer, position, answer_id)
        assert patched.restored[layer][position] == pytest.approx(expected, abs=1e-3)


def test_patching_the_last_block_at_the_last_position_restores_everything(patched):
    assert patched.restored[-1][-1] == pytest.approx(1.0, abs=1e-4)
    assert patched.p_clean > 0.5 > patched.p_corrupt


def test_prompts_of_different_lengths_are_refused(smollm2):
    with pytest.raises(LensError, match="different lengths"):
        patch_residuals(smollm2, CLEAN, "The capital of the United Kingdom is", ANSWER)


def test_patching_chosen_positions_equals_those_columns_of_patching_all(smollm2, patched):
    chosen = patch_residuals(smollm2, CLEAN, CORRUPT, ANSWER, positions=[3, -1])
    n_pos = len(patched.tokens)
    assert chosen.positions == (3, n_pos - 1)
    for position in (3, -1):
        assert chosen.at(position) == pytest.approx(patched.at(position), abs=1e-4)
