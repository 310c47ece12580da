"""Tuned lenses on disk, in tuned-lens's published format: read one from a folder or from tuned-lens's Hub
space, write one atomically, and find the one trained here for a loaded model (`lens.lenses.train_tuned`).

The format is tuned-lens's (AlignmentResearch/tuned-lens, `tuned_lens/nn/lenses.py`), so a published lens loads
and a lens trained here loads in tuned-lens:
- `config.json`: its `TunedLensConfig`: base_model_name_or_path, d_model, num_hidden_layers, bias,
  base_model_revision, unembed_hash, lens_type ("linear_tuned_lens").
- `params.pt`: `torch.save` of its `layer_translators` (a ModuleList of `torch.nn.Linear(d_model, d_model)`)
  state dict: `{i}.weight` (d_model, d_model) and `{i}.bias` (d_model,) for i in 0 .. num_hidden_layers - 1.
- Translator i reads transformers' `hidden_states[i]` (its train loop: `output.hidden_states[:-1]`): 0 the
  embeddings, i >= 1 the output of block i - 1. So block i's output here is translator i + 1's; the last block
  has none (its output through the final norm and unembedding *is* the output), and translator 0 is never read
  here (a lens trained here writes it as zeros: the embeddings through the plain logit lens).
- tuned-lens adds the translator's output to the residual, h + (A h + b), A and b initialised at 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lens.errors import LensError, command
from lens.lenses.lenses import TunedLens
from lens.models.model import LoadedModel
from lens.paths import cache_dir

CONFIG, PARAMS = "config.json", "params.pt"
TUNED_LENS_SPACE = "AlignmentResearch/tuned-lens"
"""The Hugging Face *space* tuned-lens publishes its lenses in, each under `lens/<model repo id>/`."""


def tuned_lens(model: LoadedModel, source: str | Path | None = None) -> TunedLens:
    """A tuned lens for a loaded model, to read with `lens.reads.trace.read(..., lens=...)`.

    Args:
        source: None: the lens trained here for these weights (`lens train-tuned`); "hub": tuned-lens's
            published lens for the model's Hub repo; "hub:<repo id>": the published lens of that id; otherwise
            a folder with `config.json` and `params.pt`.
    """
    if source is None:
        folder = trained_folder(model)
        if not (folder / CONFIG).is_file():
            raise LensError(f"no tuned lens for {model.name}: train one with `{command(f'train-tuned {model.name}')}`")
        return read_folder(folder, model, source=trained_provenance(folder))
    source = str(source)
    if source == "hub" or source.startswith("hub:"):
        return published(model, source.removeprefix("hub").removeprefix(":") or None)
    if not Path(source).is_dir():
        raise LensError(
            f"no tuned lens folder at {source}: give a folder with {CONFIG} and {PARAMS}, 'hub', or 'hub:<repo id>'"
        )
    return read_folder(Path(source), model)


def trained_folder(model: LoadedModel) -> Path:
    """Where the lens trained here for a model's weights is kept: keyed by `weights_id`, so other weights under
    the same name never get it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.name)
    digest = hashlib.sha256(model.weights_id.encode()).hexdigest()[:16]
    return cache_dir() / "tuned" / f"{slug}-{digest}"


def trained_provenance(folder: Path) -> str:
    """How a lens trained here was made, from what its training recorded beside it (`training.json`, or the same
    keys in `config.json`), as a report names the lens that made a column: "trained here: <recipe>, <tokens>
    tokens of <corpus>"."""
    record: dict[str, Any] = {}
    for name in (CONFIG, "training.json"):
        try:
            found = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict):
            record.update({k: v for k, v in found.items() if k in ("recipe", "corpus", "read_tokens", "tokens")})
    recipe, tokens, corpus = record.get("recipe"), record.get("read_tokens", record.get("tokens")), record.get("corpus")
    if not recipe:
        return f"trained here ({folder})"
    count = f", {tokens:,} tokens" if isinstance(tokens, int) else ""
    return f"trained here: {recipe}{count}{f' of {corpus}' if corpus else ''}"


def read_folder(folder: Path, model: LoadedModel, source: str | None = None) -> TunedLens:
    """A tuned lens from a folder in tuned-lens's format, checked against the model it will read."""
    config_path, params_path = folder / CONFIG, folder / PARAMS
    for path in (config_path, params_path):
        if not path.is_file():
            raise LensError(
                f"{folder} is not a tuned lens: it has no {path.name} (tuned-lens's format: {CONFIG} and {PARAMS})"
            )
    try:
        config = json.loads(config_path.read_text())
        n_layers, d_model = int(config["num_hidden_layers"]), int(config["d_model"])
    except (ValueError, KeyError, TypeError) as error:
        raise LensError(
            f"{config_path} is not a tuned lens's config ({error!r}): fetch or train the lens again"
        ) from None
    want_layers, want_d = model.n_layers, int(model.bridge.cfg.d_model)
    if (n_layers, d_model) != (want_layers, want_d):
        raise LensError(
            f"the tuned lens in {folder} is for {n_layers} blocks of width {d_model}, {model.name} has "
            f"{want_layers} of width {want_d}: use a lens for this model "
            f"(`{command(f'train-tuned {model.name}')}`)"
        )
    try:
        state = torch.load(params_path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises many types
        raise LensError(
            f"{params_path} cannot be read ({type(error).__name__}): fetch or train the lens again"
        ) from None
    weight, bias = _translators(state, n_layers, d_model, bool(config.get("bias", True)), params_path)
    return TunedLens(weight=weight, bias=bias, source=source or str(folder))


def _translators(
    state: Any, n_layers: int, d_model: int, has_bias: bool, path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks 0 .. n_layers - 2's translators (tuned-lens's 1 .. n_layers - 1) from the state dict, as float32."""
    if not isinstance(state, dict):
        raise LensError(f"{path} holds no state dict of translators: fetch or train the lens again")
    weights, biases = [], []
    for i in range(1, n_layers):
        w, b = state.get(f"{i}.weight"), state.get(f"{i}.bias")
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (d_model, d_model):
            raise LensError(
                f"{path}: translator {i}'s weight is {_shape(w)}, not ({d_model}, {d_model}): fetch or "
                "train the lens again"
            )
        if has_bias and (not isinstance(b, torch.Tensor) or tuple(b.shape) != (d_model,)):
            raise LensError(
                f"{path}: translator {i}'s bias is {_shape(b)}, not ({d_model},): fetch or train the lens again"
            )
        weights.append(w.float())
        biases.append(b.float() if has_bias else torch.zeros(d_model))
    return torch.stack(weights), torch.stack(biases)


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else "missing"


def write_folder(lens: TunedLens, folder: Path, model: LoadedModel, extra: dict[str, Any] | None = None) -> Path:
    """Write a tuned lens in tuned-lens's format, `extra` (how it was trained) as more keys of its `config.json`
    (tuned-lens's `TunedLensConfig.from_dict` drops keys it does not know), atomically: into a temporary folder
    beside `folder`, renamed into place once complete, so an interruption leaves no half-written lens."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        partial.chmod(0o755)  # mkdtemp's 0700 would hide the kept lens from the cache's other readers
        zeros = (torch.zeros(lens.d_model, lens.d_model), torch.zeros(lens.d_model))
        translators = [zeros] + list(zip(lens.weight, lens.bias))
        state = {}
        for i, (w, b) in enumerate(translators):
            state[f"{i}.weight"] = w.detach().float().cpu().clone()
            state[f"{i}.bias"] = b.detach().float().cpu().clone()
        torch.save(state, partial / PARAMS)
        config = published_config(model)
        config.update({k: v for k, v in (extra or {}).items() if k not in config})
        (partial / CONFIG).write_text(json.dumps(config, indent=1))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            partial.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder


def published_config(model: LoadedModel) -> dict[str, Any]:
    """tuned-lens's `TunedLensConfig` for a lens of this model, as its `config.json` holds it."""
    return {
        "base_model_name_or_path": getattr(model.spec, "repo", None) or model.name,
        "d_model": int(model.bridge.cfg.d_model),
        "num_hidden_layers": model.n_layers,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": unembed_hash(model),
        "lens_type": "linear_tuned_lens",
    }


def unembed_hash(model: LoadedModel) -> str:
    """tuned-lens's hash of the unembedding matrix (`Unembed.unembedding_hash`): sha256 of numpy's summary of it
    at one decimal, robust to dtype. Recorded, not enforced (a GGUF copy's quantized unembedding differs)."""
    import numpy as np

    weight = model.hf_model.get_output_embeddings().weight.detach().cpu().float().numpy()
    return hashlib.sha256(np.array_str(weight, precision=1).encode()).hexdigest()


def published(model: LoadedModel, resource_id: str | None = None) -> TunedLens:
    """tuned-lens's published lens for a model (default: its Hub repo id), from the Hub into the Hugging Face
    cache (once: later calls read the cache, offline too)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    resource_id = resource_id or getattr(model.spec, "repo", None)
    if not resource_id:
        raise LensError(
            f"{model.name} is no Hub model: name the published lens, e.g. "
            f"'hub:meta-llama/Meta-Llama-3-8B', or train one with `{command(f'train-tuned {model.name}')}`"
        )
    try:
        paths = [
            Path(hf_hub_download(TUNED_LENS_SPACE, name, subfolder=f"lens/{resource_id}", repo_type="space"))
            for name in (CONFIG, PARAMS)
        ]
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise LensError(
            f"cannot reach the Hugging Face Hub for the tuned lens of {resource_id} (no network, or "
            f"HF_HUB_OFFLINE=1 is set): connect, or train one with "
            f"`{command(f'train-tuned {model.name}')}`"
        ) from None
    except (EntryNotFoundError, RepositoryNotFoundError):
        raise LensError(
            f"tuned-lens publishes no lens for {resource_id} (huggingface.co/spaces/{TUNED_LENS_SPACE}): "
            f"train one with `{command(f'train-tuned {model.name}')}`"
        ) from None
    except HfHubHTTPError as error:
        raise LensError(
            f"the Hugging Face Hub refused the tuned lens of {resource_id} ({error.__class__.__name__}): "
            "try again later"
        ) from None
    return read_folder(paths[0].parent, model, source=f"hub:{resource_id}")
