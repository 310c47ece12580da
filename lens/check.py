"""`lens check`: does the lens on the chosen device agree with the CPU? (MPS has given silently wrong
results before: TransformerLens issue 1178.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lens.loader import LoadedModel
from lens.trace import collect, lens_logits

CHECK_PROMPTS = (
    "The capital of Germany is",
    "Question: What is the capital of France? Answer:",
    "Berlin is the capital of",
)
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}
"""Largest allowed |p_device - p_cpu| of any token at any layer, by dtype."""


@dataclass(frozen=True)
class DeviceCheck:
    """How far the lens on one device is from the same lens on the CPU."""

    model: str
    device: str
    dtype: str
    max_abs_diff: float
    """Largest |p_device - p_cpu| over prompts, layers and the whole vocabulary."""
    top1_agreement: float
    """Share of (prompt, layer) pairs whose top-1 token is the same on both."""
    tolerance: float

    @property
    def agrees(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == 1.0

    def summary(self) -> str:
        verdict = "agrees with" if self.agrees else "DISAGREES with"
        return (
            f"{self.model} on {self.device} ({self.dtype}) {verdict} the CPU: "
            f"max |Δp| = {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
            f"top-1 agreement {self.top1_agreement:.0%}"
        )


def lens_probabilities(model: LoadedModel, prompts: tuple[str, ...] = CHECK_PROMPTS) -> torch.Tensor:
    """Lens probabilities at every layer, shape (prompts, n_layers, vocab), on the CPU in float32."""
    resid = collect(model, prompts).resid
    with torch.inference_mode():
        return torch.softmax(lens_logits(model, resid).float(), dim=-1).cpu()


def compare(model: LoadedModel, on_device: torch.Tensor, on_cpu: torch.Tensor) -> DeviceCheck:
    """Compare two sets of lens probabilities of the same prompts."""
    return DeviceCheck(
        model=model.name,
        device=model.device,
        dtype=str(model.dtype).removeprefix("torch."),
        max_abs_diff=float((on_device - on_cpu).abs().max()),
        top1_agreement=float((on_device.argmax(-1) == on_cpu.argmax(-1)).float().mean()),
        tolerance=TOLERANCE[model.dtype],
    )


def check_device(model: LoadedModel) -> DeviceCheck:
    """Run the check prompts on the model's device and on the CPU, and compare (the model ends up
    back on its device)."""
    on_device = lens_probabilities(model)
    if model.device == "cpu":
        return compare(model, on_device, on_device)
    model.bridge.to("cpu")
    try:
        on_cpu = lens_probabilities(dataclasses.replace(model, device="cpu"))
    finally:
        model.bridge.to(model.device)
    return compare(model, on_device, on_cpu)
