"""Lenses: ways to read a residual stream vector as next-token logits.

`LogitLens` is the exact logit lens: the model's own final norm, unembedding and final-logit soft-capping,
so at the last block it *is* the model's output. `RawLens` unembeds the residual as it is, without the
norm: what you get if you forget the norm, kept to measure how much the norm matters. `TunedLens` (Belrose et
al. 2023) reads each block's output through that block's own affine translator first, then the exact lens: no
translator at the last block, so there too it *is* the output (`lens.tuned` loads, saves and finds one;
`lens.train_tuned` trains one). `JacobianLens` (TransformerLens's, Gurnee et al. 2026) reads block l's output h
as the exact lens of J_l h, J_l a fitted (d_model, d_model) matrix; the last block as it is (`lens.jacobian` loads one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
        """The lens's logits for residual vectors of shape (..., d_model), read alike at every block."""
        raise NotImplementedError

    def block_logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        """The lens's logits for every block's output, (..., n_layers, d_model) -> (..., n_layers, vocab): what a
        read calls, so a lens may read each block its own way. By default `logits` on the rows, one call."""
        *lead, n_layers, d_model = resid.shape
        return self.logits(model, resid.reshape(-1, d_model)).reshape(*lead, n_layers, -1)


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


@dataclass(frozen=True, eq=False, kw_only=True)
class TunedLens(Lens):
    """The tuned lens: block i's output h read as the exact lens of h + A_i h + b_i (tuned-lens's residual
    parametrization, A and b initialised at 0); the last block has no translator. Load one with `lens.tuned`."""

    name: str = "tuned"
    weight: torch.Tensor
    """A_i, (n_layers - 1, d_model, d_model), each as torch.nn.Linear stores it: (out, in)."""
    bias: torch.Tensor
    """b_i, (n_layers - 1, d_model)."""
    source: str = ""
    """Where it came from: a folder, the Hub, or the lens cache (trained here)."""

    __eq__ = object.__eq__  # two tuned lenses are the same lens only if they are one object (not by name)
    __hash__ = object.__hash__

    @property
    def n_layers(self) -> int:
        """The number of blocks of the model it reads: one translator for each but the last."""
        return int(self.weight.shape[0]) + 1

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[-1])

    def translate(self, resid: torch.Tensor) -> torch.Tensor:
        """Block outputs (..., n_layers, d_model) translated, in float32: h + A h + b, the last block's as it is."""
        h = resid.float()
        weight, bias = self.weight.to(h.device, torch.float32), self.bias.to(h.device, torch.float32)
        early = h[..., :-1, :]
        moved = early + torch.einsum("...le,lde->...ld", early, weight) + bias
        return torch.cat([moved, h[..., -1:, :]], dim=-2)

    def block_logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        if tuple(resid.shape[-2:]) != (self.n_layers, self.d_model):
            raise ValueError(f"the tuned lens reads {self.n_layers} blocks of width {self.d_model}, not "
                             f"{tuple(resid.shape[-2:])}")
        translated = self.translate(resid).to(resid.dtype)
        *lead, n_layers, d_model = resid.shape
        rows = exact_logits(model.bridge.ln_final, model.bridge.unembed, translated.reshape(-1, d_model), model.softcap)
        return rows.reshape(*lead, n_layers, -1)

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        raise ValueError("the tuned lens reads each block through its own translator: call block_logits with the "
                         "block outputs, (..., n_layers, d_model)")


@dataclass(frozen=True, eq=False, kw_only=True)
class JacobianLens(Lens):
    """TransformerLens's Jacobian lens: block l's output h read as the exact lens of J_l h, J_l the corpus mean of
    d(last block's output)/d(block l's output); no matrix at the last block (J = I), so there it is the output."""

    name: str = "jacobian"
    transporter: Any
    """transformer_lens.tools.analysis.JacobianLens with a matrix for each block but the last: its `transport`
    (J_l h, in float32) is the arithmetic, so the matrices are applied by TransformerLens's own code."""
    n_layers: int
    source: str = ""
    """Where it came from: a file, or TransformerLens's published artefact on the Hub."""

    __eq__ = object.__eq__  # one lens per loaded artefact, as for the tuned lens
    __hash__ = object.__hash__

    @property
    def d_model(self) -> int:
        return int(self.transporter.d_model)

    def transport(self, resid: torch.Tensor) -> torch.Tensor:
        """Block outputs (..., n_layers, d_model) moved into the last block's basis, in float32: J_l h for each
        block l but the last, whose output is kept as it is."""
        moved = [self.transporter.transport(resid[..., layer, :], layer) for layer in range(self.n_layers - 1)]
        return torch.stack([*moved, resid[..., -1, :].float()], dim=-2)

    def block_logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        if tuple(resid.shape[-2:]) != (self.n_layers, self.d_model):
            raise ValueError(f"the Jacobian lens reads {self.n_layers} blocks of width {self.d_model}, not "
                             f"{tuple(resid.shape[-2:])}")
        moved = self.transport(resid).to(resid.dtype)  # as TransformerLens's readout: the norm in the model's dtype
        *lead, n_layers, d_model = resid.shape
        rows = exact_logits(model.bridge.ln_final, model.bridge.unembed, moved.reshape(-1, d_model), model.softcap)
        return rows.reshape(*lead, n_layers, -1)

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        raise ValueError("the Jacobian lens reads each block through its own matrix: call block_logits with the "
                         "block outputs, (..., n_layers, d_model)")


LENSES = (EXACT.name, RAW.name, "tuned", "jacobian")
"""Every lens by name: the exact logit lens, the raw one, a tuned lens (per model: trained or loaded) and
TransformerLens's Jacobian lens (per model: loaded)."""
