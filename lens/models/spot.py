"""Spot checks through a run: one prompt's forward pass on the model's device, every block recomputed on the
CPU from the block's own input, one block's weights at a time (no second copy of the model).

The check at load time looks once; the known silent MPS errors depend on allocator state (PyTorch issue
193487), so a run on MPS or CUDA spot-checks a prompt of every forward pass it makes (`lens.reads.trace.collect`)
and refuses its results in one line when a block's output differs from the CPU's beyond the dtype's
tolerance. Replaying each block from the device's own input keeps errors from compounding: a wrong block is
named, and the others agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from lens.errors import LensError
from lens.models.bridge import plain_view
from lens.models.device import RELATIVE_TOLERANCE
from lens.models.model import LoadedModel, Model
from lens.tokens import encode_ids


class DeviceDisagrees(LensError):
    """A spot check found the device's result off the CPU's: the run's results are not to be trusted."""


@dataclass(frozen=True)
class SpotCheck:
    """How far each block's output on the model's device is from the same block recomputed on the CPU."""

    model: str
    device: str
    worst_block: int
    worst: float
    """Largest relative difference over blocks (max |Δ| / max |CPU output|)."""
    tolerance: float

    @property
    def agrees(self) -> bool:
        return self.worst <= self.tolerance

    def summary(self) -> str:
        verdict = "agrees with" if self.agrees else "DISAGREES with"
        return (
            f"{self.model} on {self.device} {verdict} the CPU on a spot check: block {self.worst_block} "
            f"differs by {self.worst:.1e} of its scale (tolerance {self.tolerance:.0e})"
        )


@torch.inference_mode()
def spot_check(model: LoadedModel, sequence: list[int]) -> SpotCheck:
    """Run one token sequence on the model's device, then every block again on the CPU in float32 from the
    input the block got on the device, and compare the outputs."""
    hf = plain_view(model.hf_model)
    layers = list(hf.get_decoder().layers)
    seen: dict[int, tuple] = {}

    def keep(i):
        def pre(module, args, kwargs):
            seen[i] = (args, kwargs)

        def post(module, args, kwargs, output):
            seen[i] = (*seen[i], output[0] if isinstance(output, tuple) else output)

        return pre, post

    handles = []
    for i, layer in enumerate(layers):
        pre, post = keep(i)
        handles += [
            layer.register_forward_pre_hook(pre, with_kwargs=True),
            layer.register_forward_hook(post, with_kwargs=True),
        ]
    try:
        batch = {k: v.to(model.device) for k, v in encode_ids(model.tokenizer, [sequence], model.n_ctx).items()}
        hf(**batch, logits_to_keep=1, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    worst, worst_block = 0.0, 0
    for i, layer in enumerate(layers):
        args, kwargs, output = seen[i]
        on_cpu = copy.deepcopy(layer).to("cpu", torch.float32)  # one block's weights at a time
        replay = on_cpu.forward(*_to_cpu(args), **_to_cpu(kwargs))  # .forward: no hooks, as built
        replay = replay[0] if isinstance(replay, tuple) else replay
        scale = float(replay.abs().max().clamp_min(1e-12))
        relative = float((output.to("cpu", torch.float32) - replay).abs().max()) / scale
        if relative > worst:
            worst, worst_block = relative, i
        del on_cpu
    return SpotCheck(model.name, model.device, worst_block, worst, RELATIVE_TOLERANCE[model.dtype])


def spot_checks(model: Model) -> bool:
    """Whether a run spot-checks its forward passes: on MPS and CUDA (the CPU is the reference itself);
    `model.spot_checks` (True or False) decides where set (a model on NDIF: False, nothing runs here)."""
    chosen = getattr(model, "spot_checks", None)
    if chosen is not None:
        return bool(chosen)
    return str(model.device) != "cpu"


def require_agreement(model: LoadedModel, sequence: list[int]) -> None:
    """Refuse, in one line, a run whose spot check disagrees with the CPU."""
    check = spot_check(model, sequence)
    if not check.agrees:
        raise DeviceDisagrees(f"refusing the results: {check.summary()}; run with --device cpu")


def _to_cpu(value):
    """Tensors (in tuples, lists, dicts) moved to the CPU in float32 where floating; the rest as it is."""
    if isinstance(value, torch.Tensor):
        return value.to("cpu", torch.float32) if value.is_floating_point() else value.to("cpu")
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
