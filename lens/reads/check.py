"""`lens check`: does the lens on the chosen device agree with the CPU? (MPS has given silently wrong
results before: TransformerLens issue 1178.) With `--backend nnsight`: does the nnsight backend give the
bridge backend's lens?"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lens.errors import LensError
from lens.lenses.lenses import EXACT
from lens.models.exact import PROMPT
from lens.models.model import LoadedModel
from lens.reads.trace import collect

CHECK_PROMPTS = (
    PROMPT,
    "Question: What is the capital of France? Answer:",
    "Berlin is the capital of",
)
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}
"""Largest allowed |p_device - p_cpu| of any token at any layer, by dtype."""
BACKEND_TOLERANCE = 1e-4
"""Largest allowed |p_nnsight - p_bridge| of any token at any layer: one model, device and dtype, two ways of
running it (measured: 0 on the CPU in float32, the same kernels run)."""


@dataclass(frozen=True)
class DeviceCheck:
    """How far the lens of one model run is from the same lens in a reference run."""

    model: str
    device: str
    dtype: str
    reference: str
    """The reference run, e.g. "the CPU"."""
    max_abs_diff: float
    """Largest |p - p_reference| over prompts, layers and the whole vocabulary."""
    top1_agreement: float
    """Share of (prompt, layer) pairs whose top-1 token is the reference's, or ties with it there
    (its reference probability within the tolerance of the reference's top-1)."""
    tolerance: float
    backend: str = "bridge"
    """The execution backend of the run checked (the reference's is the bridge)."""

    @property
    def agrees(self) -> bool:
        """Within tolerance everywhere, and the same top-1 token wherever it is no near-tie."""
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == 1.0

    def summary(self) -> str:
        """One line: agrees or DISAGREES, with the figures."""
        verdict = "agrees with" if self.agrees else "DISAGREES with"
        through = f" through {self.backend}" if self.backend != "bridge" else ""
        return (
            f"{self.model}{through} on {self.device} ({self.dtype}) {verdict} {self.reference}: "
            f"max |Δp| = {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
            f"top-1 agreement {self.top1_agreement:.0%}"
        )


def lens_probabilities(
    model: LoadedModel, prompts: tuple[str, ...] = CHECK_PROMPTS, backend: str = "bridge"
) -> torch.Tensor:
    """Exact-lens probabilities at every layer, shape (prompts, n_layers, vocab), on the CPU in float32."""
    resid = collect(model, prompts, backend=backend).resid
    with torch.inference_mode():
        return torch.softmax(EXACT.logits(model, resid).float(), dim=-1).cpu()


def compare(
    model: LoadedModel,
    probs: torch.Tensor,
    reference: torch.Tensor,
    reference_name: str,
    tolerance: float | None = None,
    backend: str = "bridge",
) -> DeviceCheck:
    """Compare a model's lens probabilities with a reference computation's, of the same prompts (tolerance:
    by the model's dtype unless given)."""
    tolerance = TOLERANCE[model.dtype] if tolerance is None else tolerance
    chosen = probs.argmax(-1, keepdim=True)
    best = reference.max(-1, keepdim=True).values
    tied = reference.gather(-1, chosen) >= best - tolerance
    return DeviceCheck(
        model=model.name,
        device=model.device,
        dtype=str(model.dtype).removeprefix("torch."),
        reference=reference_name,
        max_abs_diff=float((probs - reference).abs().max()),
        top1_agreement=float(tied.float().mean()),
        tolerance=tolerance,
        backend=backend,
    )


def compare_models(model: LoadedModel, reference: LoadedModel) -> DeviceCheck:
    """The lens of `model` against that of `reference`, the same weights loaded another way
    (another dtype, device or loader)."""
    return compare(
        model,
        lens_probabilities(model),
        lens_probabilities(reference),
        f"{reference.name} on {reference.device} ({str(reference.dtype).removeprefix('torch.')})",
    )


def check_device(model: LoadedModel) -> DeviceCheck:
    """Run the check prompts on the model's device and on the CPU, and compare (the model ends up back
    on its device)."""
    if model.device == "cpu":
        raise LensError(
            f"{model.name} runs on the CPU already, the reference itself: `lens check` compares mps or cuda "
            "with the CPU (give --device mps or --device cuda)"
        )
    on_device = lens_probabilities(model)
    model.bridge.to("cpu", print_details=False)
    try:
        on_cpu = lens_probabilities(dataclasses.replace(model, device="cpu"))
    finally:
        model.bridge.to(model.device, print_details=False)
    return compare(model, on_device, on_cpu, "the CPU")


def compare_backends(
    model: LoadedModel, backend: str = "nnsight", prompts: tuple[str, ...] = CHECK_PROMPTS
) -> DeviceCheck:
    """The lens of one model run through `backend` against the same model run through the bridge (same device
    and dtype), within `BACKEND_TOLERANCE` at every layer."""
    if backend == "bridge":
        raise LensError("the bridge backend is the reference: `lens check --backend nnsight` compares nnsight with it")
    return compare(
        model,
        lens_probabilities(model, prompts, backend),
        lens_probabilities(model, prompts),
        "the bridge backend",
        tolerance=BACKEND_TOLERANCE,
        backend=backend,
    )
