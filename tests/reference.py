"""An independent logit lens with plain transformers forward hooks (no TransformerLens), to check ours."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

from lens.models.model import LoadedModel


def plain_twin(model: LoadedModel) -> torch.nn.Module:
    """A second, plain transformers copy of a model's weights (eager attention, float32)."""
    folder, _ = model.spec.weights_folder()
    return hf.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()


@torch.inference_mode()
def reference_lens(
    twin: torch.nn.Module, tokenizer, prompt: str, norm: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer lens logits (n_layers, vocab) and output logits (vocab) at the last position, from
    forward hooks on the decoder layers, the model's norm, lm_head and config soft-cap (`norm=False`:
    lm_head on the block outputs as they are, no norm, no cap)."""
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        captured.append(hidden[:, -1])

    handles = [layer.register_forward_hook(keep) for layer in twin.model.layers]
    try:
        output = twin(**tokenizer([prompt], return_tensors="pt")).logits[0, -1]
    finally:
        for handle in handles:
            handle.remove()
    if not norm:
        return twin.lm_head(torch.cat(captured)).float(), output.float()
    logits = twin.lm_head(twin.model.norm(torch.cat(captured)))
    cap = getattr(twin.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float(), output.float()


def assert_the_output_at_the_last_block(traces, exact=None, moved: float = 0.0) -> None:
    """Each trace's last block is the model's output (within float error, KL 0); with `exact`, the same prompts'
    traces through the exact lens, every earlier block's KL to the output differs from theirs by more than
    `moved` (the lens really moved those blocks)."""
    for i, trace in enumerate(traces):
        assert trace.final_max_abs_diff <= 1e-4 * max(1.0, trace.output_max_abs_logit)
        assert trace.layers[-1].kl_to_output == pytest.approx(0, abs=1e-5)
        if exact is not None:
            assert all(
                abs(a.kl_to_output - b.kl_to_output) > moved for a, b in zip(trace.layers[:-1], exact[i].layers[:-1])
            )
