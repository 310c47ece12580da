"""Lenses: ways to read a residual stream vector as next-token logits.

`LogitLens` is the exact logit lens: the model's own final norm, unembedding and final-logit soft-capping,
so at the last block it *is* the model's output. `RawLens` unembeds the residual as it is, without the
norm: what you get if you forget the norm, kept to measure how much the norm matters. `TunedLens` (Belrose et
al. 2023) reads each block's output through that block's own affine translator first, then the exact lens: no
translator at the last block, so there too it *is* the output (`lens.lenses.tuned` loads, saves and finds one;
`lens.lenses.train_tuned` trains one). `JacobianLens` (TransformerLens's, Gurnee et al. 2026) reads block l's output h
as the exact lens of J_l h, J_l a fitted (d_model, d_model) matrix; the last block as it is
(`lens.lenses.jacobian` loads one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lens.models.exact import exact_logits
from lens.models.model import LoadedModel


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
class BlockwiseLens(Lens):
    """A lens that moves each block's output its own way (`move`), then reads it through the exact lens; the last
    block's output is kept as it is, so there it *is* the output. A subclass gives `n_layers`, `d_model`, `move`
    and what it moves a block through (`through`, for messages). One object per loaded artefact: equal only to
    itself, never by name."""

    title: ClassVar[str] = ""
    """How messages name the lens: "tuned", "Jacobian"."""
    through: ClassVar[str] = ""
    """What moves a block's output: "translator", "matrix"."""
    source: str = ""
    """Where it came from and by what recipe, as a report names the lens that made a column: "published:
    <repo>/<path> (...)" (`lens.lenses.published`), "trained here: <recipe>, <tokens> tokens of <corpus>"
    (`lens.lenses.tuned.trained_provenance`), a folder or file, or "hub:<name>"."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def move(self, resid: torch.Tensor) -> torch.Tensor:
        """Block outputs (..., n_layers, d_model) moved, in float32; the last block's as it is."""
        raise NotImplementedError

    def block_logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        if tuple(resid.shape[-2:]) != (self.n_layers, self.d_model):
            raise ValueError(
                f"the {self.title} lens reads {self.n_layers} blocks of width {self.d_model}, not "
                f"{tuple(resid.shape[-2:])}"
            )
        moved = self.move(resid).to(resid.dtype)  # the norm in the model's dtype, as for the exact lens
        *lead, n_layers, d_model = resid.shape
        rows = exact_logits(model.bridge.ln_final, model.bridge.unembed, moved.reshape(-1, d_model), model.softcap)
        return rows.reshape(*lead, n_layers, -1)

    def logits(self, model: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            f"the {self.title} lens reads each block through its own {self.through}: call block_logits "
            "with the block outputs, (..., n_layers, d_model)"
        )


@dataclass(frozen=True, eq=False, kw_only=True)
class TunedLens(BlockwiseLens):
    """The tuned lens: block i's output h read as the exact lens of h + A_i h + b_i (tuned-lens's residual
    parametrization, A and b initialised at 0); the last block has no translator. Load one with `lens.lenses.tuned`."""

    title: ClassVar[str] = "tuned"
    through: ClassVar[str] = "translator"
    name: str = "tuned"
    weight: torch.Tensor
    """A_i, (n_layers - 1, d_model, d_model), each as torch.nn.Linear stores it: (out, in)."""
    bias: torch.Tensor
    """b_i, (n_layers - 1, d_model)."""

    @property
    def n_layers(self) -> int:
        """The number of blocks of the model it reads: one translator for each but the last."""
        return int(self.weight.shape[0]) + 1

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[-1])

    def move(self, resid: torch.Tensor) -> torch.Tensor:
        """h + A h + b for each block but the last."""
        h = resid.float()
        weight, bias = self.weight.to(h.device, torch.float32), self.bias.to(h.device, torch.float32)
        early = h[..., :-1, :]
        moved = early + torch.einsum("...le,lde->...ld", early, weight) + bias
        return torch.cat([moved, h[..., -1:, :]], dim=-2)


@dataclass(frozen=True, eq=False, kw_only=True)
class JacobianLens(BlockwiseLens):
    """TransformerLens's Jacobian lens: block l's output h read as the exact lens of J_l h, J_l the corpus mean of
    d(last block's output)/d(block l's output); no matrix at the last block (J = I), so there it is the output."""

    title: ClassVar[str] = "Jacobian"
    through: ClassVar[str] = "matrix"
    name: str = "jacobian"
    transporter: Any
    """transformer_lens.tools.analysis.JacobianLens with a matrix for each block but the last: its `transport`
    (J_l h, in float32) is the arithmetic, so the matrices are applied by TransformerLens's own code."""
    n_layers: int

    @property
    def d_model(self) -> int:
        return int(self.transporter.d_model)

    def move(self, resid: torch.Tensor) -> torch.Tensor:
        """J_l h for each block l but the last (TransformerLens's readout, too, applies the norm in the model's
        dtype)."""
        moved = [self.transporter.transport(resid[..., layer, :], layer) for layer in range(self.n_layers - 1)]
        return torch.stack([*moved, resid[..., -1, :].float()], dim=-2)
