"""A model ready for the lens: the bridge, the model's own tokenizer, where it came from and how it runs.
Its own module, so that what reads a model (the lens, the checks) never imports what loads one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lens.models.registry import ModelSpec


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
    spot_checks: bool | None = None
    """Whether its forward passes are spot-checked against the CPU (lens.models.spot); None: on MPS and CUDA."""

    @property
    def name(self) -> str:
        """The model's short name (registry name, or a slug of its path or repo id)."""
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
        """The wrapped Hugging Face model."""
        return self.bridge.original_model

    def weight_bytes(self) -> int:
        """Bytes the weights take in memory."""
        return sum(p.numel() * p.element_size() for p in self.hf_model.parameters())
