"""The one list of lenses: each declared once, with how a report names it and how it is built for a model. Every
layer that lists lenses reads it (the `lens` command's `--lens` and its source options, the suite's `--lens` and
the report's order, the findings' `lens_for`), so a new lens is its module and one line in `KINDS`.

Plain data and dotted names ("module:attribute"), imported when a lens is built: importing this imports no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

Say = Callable[[str], None]


@dataclass(frozen=True)
class LensKind:
    """One lens: its name, how a report names it, and where the functions that build it for a model are."""

    name: str
    """How code, claims.toml, `--lens` and the report's ids name it."""
    title: str
    """How a report names it in words: "logit", "raw", "tuned", "Jacobian"."""
    about: str
    """One line for `lens trace --lens`'s help."""
    run: str
    """"module:attribute": the lens a findings run reads, `(model, say) -> Lens` (or the `Lens` itself); raises
    `lens.errors.NotAvailable` where the model has none here."""
    load: str = ""
    """"module:attribute": the lens `lens trace --lens NAME` reads, `(model, source: str | None) -> Lens`, the source
    from `--NAME-lens SOURCE` (none given: None); "": `run`'s."""
    source: str = ""
    """The help of `--NAME-lens SOURCE` ("": the lens takes no source)."""
    in_jobs: bool = False
    """Read inside a remote job too (NDIF): the model's own modules only; a lens with matrices of its own is read
    here."""

    def for_run(self, model: Any, say: Say | None = None) -> Any:
        """The lens a findings run reads for `model`."""
        return _built(self.run, model, say)

    def from_source(self, model: Any, source: str | None = None) -> Any:
        """The lens the command line reads for `model`, from `source` (None: its default)."""
        return _built(self.load, model, source) if self.load else self.for_run(model)


KINDS = (
    LensKind(
        "exact",
        "logit",
        "the logit lens: the model's own final norm, unembedding and soft-cap (default)",
        run="lens.lenses.lenses:EXACT",
        in_jobs=True,
    ),
    LensKind(
        "raw", "raw", "the residual unembedded without the final norm", run="lens.lenses.lenses:RAW", in_jobs=True
    ),
    LensKind(
        "tuned",
        "tuned",
        "a translator per block first (`lens train-tuned MODEL`, or --tuned-lens)",
        run="lens.lenses.published:tuned_lens_for_run",
        load="lens.lenses.tuned:tuned_lens",
        source="a folder in tuned-lens's format, 'hub' (tuned-lens's published lens for the model's Hub repo) or "
        "'hub:<repo id>'; default: the lens trained here",
    ),
    LensKind(
        "jacobian",
        "Jacobian",
        "TransformerLens's Jacobian lens, a matrix per block first (--jacobian-lens)",
        run="lens.lenses.jacobian:jacobian_lens_for_run",
        load="lens.lenses.jacobian:jacobian_lens",
        source="a .pt file in TransformerLens's format (or a folder with lens.pt), 'hub' (TransformerLens's "
        "published lens for the model's Hub repo, fetched once) or 'hub:<name>'; default: the published "
        "lens if already in the Hugging Face cache",
    ),
)
"""Every lens, in the order reports list them."""
LENSES = tuple(kind.name for kind in KINDS)
"""Every lens by name."""
READ_HERE = tuple(kind.name for kind in KINDS if not kind.in_jobs)
"""The lenses with matrices of their own, applied here to the model's block outputs (never inside a remote job)."""


def lens_kind(name: str) -> LensKind:
    """The lens of that name; one line naming the others for any other name."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"no lens named {name!r}: use one of {', '.join(LENSES)}")


@functools.singledispatch
def lens_for(model: Any, name: str, say: Say | None = None) -> Any:
    """The lens `name` a findings run reads for `model` (a model on NDIF reads only the lenses `in_jobs`:
    `lens.remote.reads`)."""
    return lens_kind(name).for_run(model, say)


def _built(target: str, *args: Any) -> Any:
    """What "module:attribute" names, called with `args` where it is a function (a lens itself is returned)."""
    module, _, attribute = target.partition(":")
    found = getattr(import_module(module), attribute)
    return found(*args) if callable(found) else found
