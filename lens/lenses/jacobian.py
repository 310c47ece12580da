"""TransformerLens's Jacobian lens on disk: read an artefact from a file or folder, or TransformerLens's published
one for a model from the Hugging Face Hub, and check it against the model it will read
(`lens.lenses.lenses.JacobianLens`).

The format is TransformerLens's (`transformer_lens/tools/analysis/jacobian_lens.py`, `JacobianLens.save`/`load`),
itself the reference implementation's (anthropics/jacobian-lens): `torch.save` of a dict
- `J`: {block l: (d_model, d_model) tensor, float16 as saved} for l in 0 .. n_layers - 2, J_l mapping the output
  of block l (`blocks.{l}.hook_out`, the residual `lens.reads.trace.collect` keeps) to the last block's output, before
  the final norm; the last block has no matrix (its transport is the identity);
- `n_prompts`, `source_layers`, `d_model`, and, from TransformerLens's `fit`, a `metadata` dict (model_name,
  model_revision, target_layer, corpus, ...).
TransformerLens's `load` also reads the reference's fit checkpoints (`jacobian_sum` and `n_done`); so does this.
Published artefacts (neuronpedia/jacobian-lens, at the commit TransformerLens's registry pins) are fetched into
the Hugging Face cache by TransformerLens's registry of names (`jacobian_lens_registry.json`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lens.errors import LensError, NotAvailable, command
from lens.lenses.lenses import JacobianLens
from lens.models.model import LoadedModel

DEFAULT_FILE = "lens.pt"
"""The file TransformerLens's `JacobianLens.from_pretrained` reads in a folder."""


def jacobian_lens(model: LoadedModel, source: str | Path | None = None) -> JacobianLens:
    """A Jacobian lens for a loaded model, to read with `lens.reads.trace.read(..., lens=...)`.

    Args:
        source: None: TransformerLens's published lens for the model (models.toml's `jacobian_lens`, else its Hub
            repo), from the Hugging Face cache only (nothing is downloaded unasked); "hub": the same, fetched once
            if not cached; "hub:<name>": the published lens of that name (a key or Hub id of TransformerLens's
            registry); otherwise a `.pt` file in TransformerLens's format, or a folder with `lens.pt` (or a single
            `.pt` file).
    """
    if source is None:
        return published(model, download=False)
    source = str(source)
    if source == "hub" or source.startswith("hub:"):
        return published(model, source.removeprefix("hub").removeprefix(":") or None)
    return read_file(artefact_path(Path(source)), model)


def jacobian_lens_for_run(model: LoadedModel, say: Callable[[str], None] | None = None) -> JacobianLens:
    """The Jacobian lens a findings run reads: TransformerLens's published one from the Hugging Face cache; a
    model with none here is `NotAvailable` (its claims skip, saying why)."""
    try:
        return jacobian_lens(model)
    except LensError as error:
        raise NotAvailable(str(error)) from None


def artefact_path(path: Path) -> Path:
    """The artefact a path names: the file itself, or in a folder `lens.pt` or its only `.pt` file."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise LensError(
            f"no Jacobian lens at {path}: give a .pt file in TransformerLens's format, a folder with "
            f"{DEFAULT_FILE}, 'hub' or 'hub:<name>'"
        )
    if (path / DEFAULT_FILE).is_file():
        return path / DEFAULT_FILE
    found = sorted(path.glob("*.pt"))
    if len(found) != 1:
        raise LensError(f"{path} holds {len(found)} .pt files and no {DEFAULT_FILE}: name the Jacobian lens's file")
    return found[0]


def read_file(path: Path, model: LoadedModel, source: str | None = None) -> JacobianLens:
    """A Jacobian lens from a file in TransformerLens's format (read by TransformerLens's `JacobianLens.load`),
    checked against the model it will read."""
    from transformer_lens.tools.analysis import JacobianLens as Artefact

    try:
        artefact = Artefact.load(str(path))
    except Exception as error:  # a truncated or foreign file, a wrong schema: torch and TL raise many types
        raise LensError(
            f"{path} is not a Jacobian lens TransformerLens can read ({type(error).__name__}: {_first_line(error)})"
        ) from None
    return checked(artefact, model, source or str(path))


def checked(artefact: Any, model: LoadedModel, source: str) -> JacobianLens:
    """The lens, once the artefact is known to fit the model: its width, a matrix for every block but the last and
    none for it, finite entries, the model it was fitted for (where recorded), then TransformerLens's own
    `validate_model` (a raw bridge, the final-block target, the standard ln_final -> unembed path)."""
    from transformer_lens.tools.analysis import JacobianLens as Artefact

    n_layers, d_model = model.n_layers, int(model.bridge.cfg.d_model)
    if artefact.d_model != d_model:
        raise LensError(
            f"the Jacobian lens in {source} is for width {artefact.d_model}, {model.name} has width "
            f"{d_model}: use a lens fitted for this model"
        )
    layers = artefact.source_layers
    if layers != list(range(n_layers - 1)):
        raise LensError(
            f"the Jacobian lens in {source} has matrices for blocks {_span(layers)}, {model.name} needs "
            f"one for each of blocks 0..{n_layers - 2} (and none for its last, {n_layers - 1})"
        )
    bad = [layer for layer, matrix in artefact.jacobians.items() if not bool(matrix.isfinite().all())]
    if bad:
        raise LensError(
            f"the Jacobian lens in {source} has non-finite entries at blocks {_span(bad)}: fetch or fit it again"
        )
    metadata = dict(artefact.metadata)
    fitted_for = metadata.pop("model_name", None)
    names = {
        model.name,
        str(model.bridge.cfg.model_name),
        getattr(model.spec, "repo", None),
        getattr(model.spec, "jacobian_lens", None),
    }  # models.toml names this lens for this model
    if fitted_for is not None and fitted_for not in names:
        raise LensError(f"the Jacobian lens in {source} was fitted for {fitted_for}, not {model.name}")
    revision = metadata.pop("model_revision", None)
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", model.weights_id) and revision != model.weights_id:
        raise LensError(
            f"the Jacobian lens in {source} was fitted for revision {revision} of {fitted_for}, "
            f"{model.name} is {model.weights_id}"
        )
    # The name and revision are checked above against every name the model goes by here (TransformerLens knows
    # only the bridge's); the rest of TransformerLens's check is its own.
    transporter = Artefact(
        artefact.jacobians, n_prompts=artefact.n_prompts, d_model=artefact.d_model, metadata=metadata
    )
    try:
        transporter.validate_model(model.bridge)
    except (TypeError, ValueError) as error:
        raise LensError(
            f"TransformerLens refuses the Jacobian lens in {source} for {model.name}: {_first_line(error)}"
        ) from None
    return JacobianLens(transporter=transporter, n_layers=n_layers, source=source)


def published_names() -> list[str]:
    """The names TransformerLens's registry publishes a Jacobian lens under (short names; Hub ids as aliases)."""
    from transformer_lens.tools.analysis.jacobian_lens import _load_registry

    return sorted(name for name, entry in _load_registry().items() if isinstance(entry, dict))


def published_entry(name: str) -> tuple[str, str, str] | None:
    """(repo id, file, pinned revision) of TransformerLens's published lens for a registry name or Hub model id,
    or None where it publishes none (looked up in the registry shipped with TransformerLens: no network)."""
    from transformer_lens.tools.analysis.jacobian_lens import (
        _registry_revision,
        _resolve_registry_entry,
    )

    entry = _resolve_registry_entry(name)
    return None if entry is None else (*entry, _registry_revision())


def published(model: LoadedModel, name: str | None = None, download: bool = True) -> JacobianLens:
    """TransformerLens's published lens for a model (default: the one models.toml names for it, else its Hub repo
    id), from the Hub into the Hugging Face cache (once: later calls read the cache, offline too); with
    `download=False` from the cache only."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )
    from transformer_lens.utilities.hf_utils import call_hf_with_retry

    named = getattr(model.spec, "jacobian_lens", None)
    name = name or named or getattr(model.spec, "repo", None)
    entry = published_entry(name) if name else None
    if entry is None:
        known = published_names()
        raise LensError(
            f"TransformerLens publishes no Jacobian lens for {name or model.name} (it does for "
            f"{len(known)} models, e.g. {', '.join(known[:3])}): name one with 'hub:<name>' or give a file"
        )
    repo_id, filename, revision = entry
    size = 2 * (model.n_layers - 1) * int(model.bridge.cfg.d_model) ** 2  # float16 matrices
    try:
        path = call_hf_with_retry(
            hf_hub_download, repo_id=repo_id, filename=filename, revision=revision, local_files_only=not download
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if not download:
            how = f"`{command(f'download {model.name}')}`" if name == named else "--jacobian-lens hub"
            raise LensError(
                f"TransformerLens's Jacobian lens for {name} is not in the Hugging Face cache: fetch it "
                f"once ({size / 1e9:.1f} GB) with {how}"
            ) from None
        raise LensError(
            f"cannot reach the Hugging Face Hub for the Jacobian lens of {name} (no network, or "
            "HF_HUB_OFFLINE=1 is set): connect, or give a file"
        ) from None
    except (EntryNotFoundError, RepositoryNotFoundError):
        raise LensError(
            f"huggingface.co/{repo_id} has no {filename} at {revision}: TransformerLens's registry is "
            "out of date; give a file"
        ) from None
    except HfHubHTTPError as error:
        raise LensError(
            f"the Hugging Face Hub refused the Jacobian lens of {name} ({error.__class__.__name__}): try again later"
        ) from None
    return read_file(Path(path), model, source=f"hub:{name}")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _span(layers: list[int]) -> str:
    if not layers:
        return "none"
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}..{layers[-1]} ({len(layers)})"
