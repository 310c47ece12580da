"""Loading a model by name or path into a TransformerBridge, with the model's own tokenizer.

The weights come from the spec's local folder (a GGUF file's dequantized copy, a Hub repo in the local
Hugging Face cache: never downloaded behind the user's back, or a model folder).
"""

from __future__ import annotations

import gc
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from lens.errors import LensError
from lens.models.device import choose_device, choose_dtype, mps_matmul_hazard, weight_bytes
from lens.models.exact import require_exact
from lens.models.model import LoadedModel
from lens.models.registry import ModelSpec, resolve
from lens.paths import cache_dir

OFFLOAD_MEMORY_SHARE = 0.8
"""Offload to CPU/disk (accelerate's big-model dispatch) when the weights exceed this share of free memory."""


def needs_offload(weight_bytes: int, free_bytes: int) -> bool:
    """Whether a model's weights go to CPU/disk rather than all to its device: they exceed `OFFLOAD_MEMORY_SHARE`
    of the memory free now (the rest is left for activations and the lens's reads)."""
    return weight_bytes > OFFLOAD_MEMORY_SHARE * free_bytes


def load(
    name_or_path: str,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
    planned: Plan | None = None,
) -> LoadedModel:
    """Load a model for the lens.

    Args:
        name_or_path: a registry name, a Hub repo id, a local model folder or a .gguf file.
        device: cpu, cuda, cuda:N or mps; default: mps > cuda > cpu.
        dtype: float32, bfloat16 or float16; default: float32 where it fits in memory.
        offload: True forces accelerate's CPU/disk offload, False forbids it; None chooses it when
            the weights do not fit in free memory.
        max_memory: per-device budget for offloading, e.g. {"cpu": "200MB"}.
        offload_folder: where offloaded weights go (default: a folder in the lens cache).
        planned: the `plan` of this model already made (e.g. for an estimate), so it is not made twice.
    """
    chosen = planned or plan(name_or_path, device, dtype)
    spec, folder, device, torch_dtype = chosen.spec, chosen.folder, chosen.device, chosen.dtype
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if offload is None:
        offload = needs_offload(chosen.weight_bytes, psutil.virtual_memory().available)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    if offload:
        offload_folder = Path(offload_folder or cache_dir() / "offload" / spec.name)
        offload_folder.mkdir(parents=True, exist_ok=True)
        kwargs |= {"device_map": "auto", "offload_folder": str(offload_folder)}
        if max_memory is not None:
            kwargs["max_memory"] = max_memory
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if not offload:
        hf_model.to(device)
    model = wrap(spec, hf_model, tokenizer, device, chosen.weights_id, offloaded=bool(offload))
    require_exact(model)
    return model


@dataclass(frozen=True)
class Plan:
    """How a model will load, decided from its config alone (no weight read): for the estimate and `load`."""

    spec: ModelSpec
    folder: Path
    weights_id: str
    device: str
    dtype: torch.dtype
    parameters: int

    @property
    def weight_bytes(self) -> int:
        return weight_bytes(self.parameters, self.dtype)


def plan(name_or_path: str, device: str | None = None, dtype: str | None = None) -> Plan:
    """Where a model's weights are, and the device and dtype it will run in (see `load`)."""
    spec = resolve(name_or_path)
    _quiet_libraries()
    folder, weights_id = spec.weights_folder()
    from transformers import AutoConfig

    device = choose_device(device)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if device.startswith("mps"):
        text = config.get_text_config()
        hazard = mps_matmul_hazard(
            {"hidden size": getattr(text, "hidden_size", 0), "MLP width": getattr(text, "intermediate_size", 0) or 0}
        )
        if hazard:
            raise LensError(f"refusing {spec.name} on mps: {hazard}")
    n_params = _count_params(config)
    return Plan(spec, Path(folder), weights_id, device, choose_dtype(n_params, device, dtype), n_params)


def wrap(
    spec: ModelSpec,
    hf_model: Any,
    tokenizer: Any,
    device: str,
    weights_id: str,
    offloaded: bool = False,
) -> LoadedModel:
    """Wrap a loaded Hugging Face model (on its device) and its tokenizer in a TransformerBridge."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.eval()
    # GGUF configs carry no `architectures`; the bridge picks its adapter from it.
    hf_model.config.architectures = hf_model.config.architectures or [type(hf_model).__name__]
    dtype = next(hf_model.parameters()).dtype
    bridge = TransformerBridge.boot_transformers(
        spec.name,
        hf_model=hf_model,
        tokenizer=tokenizer,
        dtype=dtype,
        **({} if offloaded else {"device": device}),
    )
    if offloaded and bridge.cfg.device in (None, "meta"):
        # Disk-offloaded weights sit on the meta device until accelerate's hooks bring them to the
        # CPU to run; inputs and the lens's own tensors belong on the CPU.
        bridge.cfg.device = "cpu"
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        spec=spec,
        bridge=bridge,
        tokenizer=tokenizer,
        device=str(bridge.cfg.device) if offloaded else device,
        dtype=dtype,
        weights_id=weights_id,
        offloaded=offloaded,
    )


def release(model: LoadedModel) -> None:
    """Free a model's memory before the next one loads (an 8B model must fit beside nothing else)."""
    model.bridge = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


def _count_params(config: Any) -> int:
    """Parameter count from a config alone (so the dtype is chosen before any weight is read)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if (
        getattr(config.get_text_config(), "tie_word_embeddings", False)
        and head is not None
        and head.weight is not embedding.weight
    ):
        n -= head.weight.numel()  # tied (SmolLM2, Gemma): one tensor once loaded, not two
    return n


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, advice) off the user's terminal; errors still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformer_lens")
