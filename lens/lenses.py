"""Lenses: ways to read a residual stream vector as next-token logits.

`LogitLens` is the exact logit lens: the model's own final norm, unembedding and final-logit soft-capping,
so at the last block it *is* the model's output. `RawLens` unembeds the residual as it is, without the
norm: what you get if you forget the norm, kept to measure how much the norm matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lens.model import LoadedModel


def exact_logits(norm: Callable, unembed: Callable, resid: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """The exact lens's arithmetic, given the model's final norm and unembedding: used on the bridge's modules
    here, and inside an nnsight trace on the model's own modules (on NDIF too, where the model is)."""
    logits = unembed(norm(resid))
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@dataclass(frozen=True)
class Lens:
    """Residual stream (..., d_model) -> logits (..., vocab) for one model."""

    name: str
    """How reports name the lens: "exact" or "raw"."""

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        """The lens's logits for residual vectors of shape (..., d_model)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LogitLens(Lens):
    """The exact logit lens: final norm, unembedding, soft-capping (where the model has it)."""

    name: str = "exact"

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        return exact_logits(model.bridge.ln_final, model.bridge.unembed, resid, model.softcap)


@dataclass(frozen=True)
class RawLens(Lens):
    """The residual unembedded without the final norm (nor soft-capping)."""

    name: str = "raw"

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        return model.bridge.unembed(resid)


EXACT = LogitLens()
RAW = RawLens()

LENSES = (EXACT.name, RAW.name, "tuned")
"""Every lens by name: the exact logit lens, the raw one, and a tuned lens (per model: trained or loaded)."""
