"""What a model is to the lens: the `Model` protocol every read, claim and the suite ask of a model, wherever it
runs, and `LoadedModel`, a model here (the bridge, the model's own tokenizer, where it came from and how it runs).
Its own module, so that what reads a model (the lens, the checks) never imports what loads one.

A model on NDIF (`lens.remote.RemoteModel`) answers the same protocol. The reads that run otherwise there (the
forward pass, the grid, generation, patching, attention, a lens read by matrices here) are generic functions whose
implementation for it the remote package registers (`lens.remote.reads`): no read asks where a model runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from lens.models.registry import ModelSpec


class Model(Protocol):
    """What a read, a claim or the suite may ask of a model, here or on NDIF."""

    spec: ModelSpec
    tokenizer: Any
    """The model's own tokenizer (left padding): every prompt is tokenized by it, BOS as it decides."""
    device: str
    """Where it runs, as a report says it: "cpu", "cuda:0", "ndif (api.ndif.us)"."""
    dtype: torch.dtype
    weights_id: str
    """What its results are of: the weights' digest or commit, or NDIF's model key."""
    spot_checks: bool | None
    """Whether its forward passes are spot-checked against the CPU (`lens.models.spot`); None: the device decides."""

    @property
    def name(self) -> str: ...

    @property
    def n_layers(self) -> int: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def softcap(self) -> float | None: ...

    def runs_through(self, asked: str) -> str:
        """The execution backend its forward passes run through when `asked` is asked (`lens.reads.backends`)."""
        ...


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

    def runs_through(self, asked: str) -> str:
        """Either backend: the one asked."""
        return asked

    @property
    def hf_model(self) -> Any:
        """The wrapped Hugging Face model."""
        return self.bridge.original_model

    def weight_bytes(self) -> int:
        """Bytes the weights take in memory."""
        return sum(p.numel() * p.element_size() for p in self.hf_model.parameters())
