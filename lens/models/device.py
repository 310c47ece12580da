"""Which device and dtype a model runs on: MPS on Apple Silicon, else CUDA, else CPU; a dtype that fits."""

from __future__ import annotations

import os

import psutil
import torch
from packaging.version import Version

from lens.errors import LensError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FP32_MEMORY_SHARE = 0.6
"""Run in float32 when the float32 weights take at most this share of memory, else bfloat16. On a 64 GB
M2 Max every model of the notes runs in float32 (Llama 3 8B: 32 GB; Gemma 2 9B: 37 GB): bfloat16 is
emulated on M1/M2 GPUs (no speed gain, transformers pull request 40458) and moves the lens's probabilities
by up to 0.04 (measured on both embedded models, top-1 unchanged). A 70B model goes to bfloat16 + offload."""


def choose_device(override: str | None = None) -> str:
    """The device to run on: `override`, else $LENS_DEVICE, else mps > cuda > cpu."""
    wanted = override or os.environ.get("LENS_DEVICE")
    if wanted:
        kind = wanted.split(":")[0]
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }
        if kind not in available:
            raise LensError(f"unknown device {wanted!r}: use cpu, cuda, cuda:N or mps")
        if not available[kind]:
            raise LensError(f"device {wanted!r} is not available on this machine: use cpu")
        device = wanted
    elif torch.backends.mps.is_available():
        device = "mps"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        device = "cpu"
    if device == "mps":
        # TransformerLens turns MPS off by default after silently wrong results (its issue 1178).
        # We enable it deliberately; `lens check MODEL` compares MPS against the CPU, and the
        # findings refuse a device that disagrees.
        os.environ["TRANSFORMERLENS_ALLOW_MPS"] = "1"
    return device


def memory_bytes(device: str) -> int:
    """Memory available to hold weights on `device` (unified memory on Apple Silicon)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return psutil.virtual_memory().total


def weight_bytes(n_params: int, dtype: torch.dtype) -> int:
    """Bytes `n_params` weights take in `dtype`."""
    return n_params * torch.finfo(dtype).bits // 8


def choose_dtype(n_params: int, device: str, override: str | None = None) -> torch.dtype:
    """float32 when it fits comfortably (exact lens), else bfloat16; `override` names one of DTYPES."""
    if override:
        if override not in DTYPES:
            raise LensError(f"unknown dtype {override!r}: use one of {', '.join(DTYPES)}")
        return DTYPES[override]
    if weight_bytes(n_params, torch.float32) <= FP32_MEMORY_SHARE * memory_bytes(device):
        return torch.float32
    return torch.bfloat16


RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}
"""Largest difference, relative to the scale of what is compared, that a dtype's own rounding explains: the
last block's lens against the output (lens.models.exact), a block on the device against the CPU (lens.models.spot).
float32 kernels differ by about 1e-6 of the scale; bfloat16 and float16 round to 8 and 11 bits (0.8% and 0.1%), a few
roundings a block. The known MPS matmul errors are 10-30%."""

MPS_SAFE_MATMUL_TORCH = "2.14.0"
"""torch 2.7-2.13 compute 2-D matmuls with a reduction over 32768 wrongly on M1/M2 GPUs, silently, 10-30% of
scale, depending on allocator state (PyTorch issue 193487); 2.14.0 routes mm/addmm/linear around it (pull
request 183535). Batched matmuls (bmm/baddbmm: 3-D matmul, einsum, attention over the sequence) stay wrong
for a reduction of 32767 or more on 2.14 and 2.15 (issue 195163)."""


def mps_matmul_hazard(reductions: dict[str, int], torch_version: str = torch.__version__) -> str | None:
    """On MPS: the known silent matmul error that a model's reductions fall in on this torch, as a one-line
    refusal (None: none known). `reductions`: what is summed over in its matmuls, e.g. {"hidden size": 4096,
    "MLP width": 14336, "prompt length": 12}; the prompt length is the reduction of attention's batched
    matmul."""
    version = Version(torch_version.split("+")[0])
    for what, size in reductions.items():
        if version < Version(MPS_SAFE_MATMUL_TORCH) and size > 32768:
            return (
                f"torch {version} computes matmuls over more than 32768 values wrongly on Apple GPUs, without an "
                f"error (PyTorch issue 193487), and this model's {what} is {size}: install torch 2.14.1 or newer "
                "(`./run` does on macOS) or run with --device cpu"
            )
        if what == "prompt length" and size >= 32767:
            return (
                f"batched matmuls over 32767 or more values are wrong on Apple GPUs on every torch so far (PyTorch "
                f"issue 195163), and this {what} is {size} tokens: shorten it or run with --device cpu"
            )
    return None
