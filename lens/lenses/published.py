"""The published lenses models.toml names for a model: fetching them into the Hugging Face cache with the model
(`lens download NAME`), and finding the tuned lens on this machine without the network, so the findings read a
lens someone trained on a GPU by tuned-lens's recipe rather than train one here.

A published tuned lens is looked for in `$LENS_PUBLISHED_DIR/<repo>/<path>` (a copy made by hand, e.g. by
`hf download`), then in the Hugging Face cache, where `lens download` puts it (`hf_hub_download`, as tuned-lens's
`load_lens_artifacts` fetches it, at the revision models.toml pins). The Jacobian lens is fetched the way
`lens.lenses.jacobian` reads it (TransformerLens's registry entry, at its pinned commit)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lens.errors import LensError, command
from lens.lenses.lenses import TunedLens
from lens.lenses.train_tuned import train_tuned
from lens.lenses.tuned import CONFIG, PARAMS, read_folder, trained_provenance
from lens.models.model import LoadedModel
from lens.models.registry import ModelSpec, PublishedTuned

PUBLISHED_DIR = "LENS_PUBLISHED_DIR"
"""Environment variable: a folder holding copies of published lenses as `<repo>/<path>/` (config.json, params.pt)."""


def local_folder(entry: PublishedTuned) -> Path | None:
    """Where a published tuned lens is on this machine, without the network: `$LENS_PUBLISHED_DIR/<repo>/<path>`
    if that folder exists (complete or not: a broken copy is refused when read, never passed over), else its
    folder in the Hugging Face cache if both files are there, else None."""
    root = os.environ.get(PUBLISHED_DIR)
    if root and (Path(root) / entry.repo / entry.path).is_dir():
        return Path(root) / entry.repo / entry.path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        paths = [
            Path(
                hf_hub_download(
                    entry.repo,
                    name,
                    subfolder=entry.path,
                    repo_type=entry.repo_type,
                    revision=entry.revision,
                    local_files_only=True,
                )
            )
            for name in (CONFIG, PARAMS)
        ]
    except LocalEntryNotFoundError:
        return None
    return paths[0].parent


def published_tuned_lens(model: LoadedModel, say: Callable[[str], None] | None = None) -> TunedLens | None:
    """The published tuned lens models.toml names for the model, read from this machine (`local_folder`), or
    None where none is named or it is not here (`say` gets one line saying so and how to fetch it). A copy that
    is here but broken, or a lens trained for another model, raises `LensError` (one line)."""
    entry = getattr(model.spec, "tuned_lens", None)
    if entry is None:
        return None
    folder = local_folder(entry)
    if folder is None:
        if say is not None:
            say(
                f"{model.name}'s published tuned lens ({entry.where}) is not here: training one here instead "
                f"(fetch it with `{command(f'download {model.name}')}`)"
            )
        return None
    _check_base_model(folder, model)
    return read_folder(folder, model, source=entry.provenance)


def tuned_lens_for_run(model: LoadedModel, say: Callable[[str], None] | None = None) -> TunedLens:
    """The tuned lens a findings run reads: the published one models.toml names where it is on this machine, else
    the one kept in the lens cache for the model's weights (trained here the first time, in well under a minute on
    the embedded models, with an estimate and progress). Its `source` says which, and by what recipe."""
    published = published_tuned_lens(model, say=say)
    if published is not None:
        return published
    trained = train_tuned(model, say=say)
    return replace(trained.lens, source=trained_provenance(trained.folder))


def _check_base_model(folder: Path, model: LoadedModel) -> None:
    """Refuse a lens whose config names another model than the one it would read (compared by the repo's last
    part, so a lens trained from a local copy of the same repo passes): a lens for other weights of the same
    width and depth would load and read them silently wrong (Mistral 7B v0.3's for v0.1)."""
    try:
        named = json.loads((folder / CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return  # read_folder refuses an unreadable config in its own words
    repo = getattr(model.spec, "repo", None)
    if not isinstance(named, str) or not named or not repo:
        return
    if _last_part(named) != _last_part(repo):
        raise LensError(
            f"the published tuned lens in {folder} was trained for {named}, not {model.name} ({repo}): "
            f"name a lens for {repo} in models.toml, or drop its `tuned_lens` to train one here"
        )


def _last_part(name: str) -> str:
    return re.split(r"[\\/]", name.rstrip("/\\"))[-1].lower()


def fetch_published(spec: ModelSpec, quiet: bool = False) -> str | None:
    """Fetch the published lenses models.toml names for a model into the Hugging Face cache (a no-op for those
    there already). Returns the one line to say: that none is named, or what could not be fetched and why (the
    rest is fetched: nothing stops at the first); None where all are here."""
    wanted: list[tuple[str, str, Callable[[], object]]] = []  # (what, what the findings do without it, fetch)
    if spec.tuned_lens is not None:
        wanted.append(
            (
                f"its tuned lens ({spec.tuned_lens.where})",
                "train its tuned lens here",
                lambda: _fetch_tuned(spec.tuned_lens),
            )
        )
    if spec.jacobian_lens is not None:
        wanted.append(
            (
                f"its Jacobian lens ({spec.jacobian_lens})",
                "skip its Jacobian-lens verdicts",
                lambda: _fetch_jacobian(spec.jacobian_lens),
            )
        )
    if not wanted:
        return (
            None
            if quiet
            else (f"{spec.name}: models.toml names no published lens for it (the findings train its tuned lens here)")
        )
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars

    if quiet:
        disable_progress_bars()
    missed, why, meanwhile = [], [], []
    for label, without, fetch in wanted:
        try:
            fetch()
            continue
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):
            reason = "no network, or HF_HUB_OFFLINE=1 is set"
        except GatedRepoError:
            reason = "a gated repo: accept its licence on huggingface.co and log in with `hf auth login`"
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
            reason = "not on the Hub where models.toml says: check models.toml"
        except HfHubHTTPError as error:
            reason = f"the Hub refused it ({type(error).__name__}): try again later"
        except LensError as error:
            reason = str(error)
        missed.append(label)
        meanwhile.append(without)
        if reason not in why:
            why.append(reason)
    if not missed:
        return None
    return (
        f"{spec.name}: could not fetch {' and '.join(missed)} ({'; '.join(why)}); the findings "
        f"{' and '.join(meanwhile)} meanwhile: run `{command(f'download {spec.name}')}` again to fetch it"
    )


def _fetch_tuned(entry: PublishedTuned) -> Path:
    """Both files of a published tuned lens into the Hugging Face cache, as tuned-lens's `load_lens_artifacts`
    downloads them; the folder holding them."""
    from huggingface_hub import hf_hub_download

    paths = [
        Path(
            hf_hub_download(entry.repo, name, subfolder=entry.path, repo_type=entry.repo_type, revision=entry.revision)
        )
        for name in (CONFIG, PARAMS)
    ]
    return paths[0].parent


def _fetch_jacobian(name: str) -> Path:
    """TransformerLens's published Jacobian lens of a registry name into the Hugging Face cache, at the commit its
    registry pins (as `JacobianLens.from_pretrained` downloads it)."""
    from huggingface_hub import hf_hub_download
    from transformer_lens.utilities.hf_utils import call_hf_with_retry

    from lens.lenses.jacobian import published_entry

    entry = published_entry(name)
    if entry is None:
        raise LensError(f"TransformerLens's registry has no Jacobian lens named {name!r}: check models.toml")
    repo_id, filename, revision = entry
    return Path(call_hf_with_retry(hf_hub_download, repo_id=repo_id, filename=filename, revision=revision))
