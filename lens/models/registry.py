"""The named models (from models.toml) and how any other model name or path is understood.

One spec type per source of weights; each knows how to describe itself, whether its weights are here,
how to fetch them and which local folder the loader reads.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from lens.errors import LensError, command
from lens.models import fetch, gguf
from lens.paths import gguf_dir


@dataclass(frozen=True)
class PublishedTuned:
    """A tuned lens someone published for a model, in tuned-lens's format (a folder with `config.json` and
    `params.pt`) inside a Hugging Face repo: models.toml's `tuned_lens` table (`lens.lenses.published` fetches and reads
    it)."""

    repo: str
    """The Hub repo holding it, e.g. "AlignmentResearch/tuned-lens"."""
    path: str
    """The folder inside the repo, e.g. "lens/meta-llama/Meta-Llama-3-8B"."""
    revision: str | None = None
    """The commit it is read at (None: the repo's main branch, which may move)."""
    repo_type: str = "model"
    """"model", or "space" (tuned-lens's own collection is a Space)."""
    trained: str = ""
    """How its publisher trained it, in a few words (corpus, steps), for the report."""

    @property
    def where(self) -> str:
        """repo/path[@commit], as messages and reports name it."""
        return f"{self.repo}/{self.path}" + (f"@{self.revision[:7]}" if self.revision else "")

    @property
    def provenance(self) -> str:
        """Where the lens came from and by what recipe, as a report names the lens that made a column."""
        return f"published: {self.where} (tuned-lens, KL-trained{'; ' + self.trained if self.trained else ''})"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Where one model's weights come from (the base of the per-source types below)."""

    name: str
    """Short name: command-line name, pytest marker, report column."""
    title: str = ""
    size_gb: float | None = None
    """Download size, said in messages before a large fetch."""
    embedded: bool = False
    """Fetched by setup and run by default (works offline, on any machine)."""
    chat: bool = False
    """An instruct model: asked in its own chat template too (a base model's tokenizer may carry one it was
    never trained on, so this is declared, not detected)."""
    tuned_lens: PublishedTuned | None = None
    """A published tuned lens for these weights (models.toml `tuned_lens`): the findings read it when it is here
    and train one here only otherwise."""
    jacobian_lens: str | None = None
    """TransformerLens's published Jacobian lens for these weights: a name in its registry (models.toml
    `jacobian_lens`)."""

    @property
    def gguf_path(self) -> Path | None:
        """The .gguf file this model loads from, if it is a GGUF model."""
        return None

    def where(self) -> str:
        """Where the weights come from, in a few words."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line naming the model and its source, for reports and messages."""
        return f"{self.title or self.name} ({self.where()})"

    @property
    def hosted(self) -> bool:
        """Whether it runs where it is hosted (NDIF), never loaded here (models.toml `remote = true`)."""
        return False

    def download_command(self) -> str:
        """The command that fetches this model's weights."""
        return command(f"download {self.name}")

    def is_present(self) -> bool:
        """Whether the model's weights are on this machine."""
        raise NotImplementedError

    def fetch(self, quiet: bool = False) -> None:
        """Fetch the weights (with progress); a no-op where they are here already."""
        raise NotImplementedError

    def weights_folder(self) -> tuple[Path, str]:
        """A local Hugging Face folder with config, tokenizer and weights, and an id of the weights."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class HubModel(ModelSpec):
    """A Hugging Face Hub repo, loaded from the local Hugging Face cache only."""

    repo: str
    gated: bool = False
    remote: bool = False
    """Runs on NDIF, through nnsight (`lens.remote`): its weights never come here."""

    @property
    def hosted(self) -> bool:
        return self.remote

    def where(self) -> str:
        return f"Hugging Face {self.repo}" + (", on NDIF" if self.remote else "")

    def download_command(self) -> str:
        # A repo id not in the registry is fetched by its id: `lens download org/name`.
        return command(f"download {self.name if self.name in registry() else self.repo}")

    def is_present(self) -> bool:
        return fetch.hub_weights_cached(self.repo)

    def fetch(self, quiet: bool = False) -> None:
        if self.remote:
            raise LensError(
                f"{self.name} runs on NDIF: nothing to download (`{command(f'trace {self.name} ...')}` or "
                f"`./run findings -m {self.name}`, with NDIF_API_KEY set)"
            )
        fetch.fetch_from_hub(self.repo, quiet)

    def weights_folder(self) -> tuple[Path, str]:
        folder = fetch.hub_folder(self.repo)
        size = f" (about {self.size_gb:g} GB)" if self.size_gb else ""
        if folder is None:
            raise LensError(f"{self.name} ({self.repo}) is not downloaded here: run `{self.download_command()}`{size}")
        if not any(folder.glob("*.safetensors")):
            raise LensError(
                f"{self.name} ({self.repo}) has no weights in the local cache: run `{self.download_command()}`"
            )
        return folder, f"{self.repo}@{folder.name}"


@dataclass(frozen=True, kw_only=True)
class PyPIModel(ModelSpec):
    """A GGUF file shipped inside PyPI packages: members joined in order, checked against sha256."""

    packages: tuple[str, ...]
    members: tuple[str, ...]
    """Paths inside the wheels whose bytes, concatenated, are the GGUF file."""
    file: str
    sha256: str

    @property
    def gguf_path(self) -> Path:
        return gguf_dir() / self.file

    def where(self) -> str:
        parts = f" +{len(self.packages) - 1} parts" if len(self.packages) > 1 else ""
        return f"PyPI {self.packages[0]}{parts}"

    def is_present(self) -> bool:
        return self.gguf_path.is_file()

    def fetch(self, quiet: bool = False) -> None:
        if not self.is_present():
            fetch.fetch_from_pypi(self.name, self.packages, self.members, self.sha256, self.gguf_path, quiet)

    def weights_folder(self) -> tuple[Path, str]:
        if not self.is_present():
            raise LensError(f"{self.name} is not fetched yet: run `{self.download_command()}`")
        return gguf.dequantized(self.gguf_path, self.sha256, self.download_command())


@dataclass(frozen=True, kw_only=True)
class LocalFolder(ModelSpec):
    """A Hugging Face model folder on disk."""

    path: Path

    def where(self) -> str:
        return f"folder {self.path}"

    def is_present(self) -> bool:
        return self.path.is_dir()

    def fetch(self, quiet: bool = False) -> None:
        if not self.is_present():
            raise LensError(f"{self.path} does not exist: check the path")

    def weights_folder(self) -> tuple[Path, str]:
        return self.path, str(self.path)


@dataclass(frozen=True, kw_only=True)
class GGUFFile(ModelSpec):
    """A .gguf file on disk, dequantized once into the lens cache."""

    path: Path

    @property
    def gguf_path(self) -> Path:
        return self.path

    def where(self) -> str:
        return f"file {self.path}"

    def is_present(self) -> bool:
        return self.path.is_file()

    def fetch(self, quiet: bool = False) -> None:
        if not self.is_present():
            raise LensError(f"{self.path} does not exist: check the path")

    def weights_folder(self) -> tuple[Path, str]:
        if not self.is_present():
            raise LensError(f"no GGUF file at {self.path}: check the path")
        return gguf.dequantized(self.path, None, None)


SOURCES: dict[str, type[ModelSpec]] = {"hub": HubModel, "pypi": PyPIModel}
"""models.toml's `source` values and the spec type each names."""


@cache
def registry() -> dict[str, ModelSpec]:
    """All named models, in the order of models.toml."""
    data = tomllib.loads(files("lens").joinpath("models.toml").read_text())
    specs = {}
    for name, entry in data.items():
        kind = SOURCES[entry.pop("source")]
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        if "tuned_lens" in fields:
            fields["tuned_lens"] = PublishedTuned(**fields["tuned_lens"])
        specs[name] = kind(name=name, **fields)
    return specs


def embedded_models() -> list[ModelSpec]:
    """The models that ship inside PyPI packages and run by default."""
    return [spec for spec in registry().values() if spec.embedded]


def resolve(name_or_path: str) -> ModelSpec:
    """A registry name, a .gguf file, a local Hugging Face folder, or a Hub repo id."""
    known = registry()
    if name_or_path in known:
        return known[name_or_path]
    path = Path(name_or_path).expanduser()
    slug = path.name.removesuffix(".gguf").lower().replace(".", "-")
    if name_or_path.lower().endswith(".gguf"):
        if not path.is_file():
            raise LensError(f"no GGUF file at {path}: check the path")
        return GGUFFile(name=slug, path=path.resolve(), title=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LensError(f"{path} is not a Hugging Face model folder (it has no config.json)")
        return LocalFolder(name=slug, path=path.resolve(), title=path.name)
    parts = name_or_path.split("/")
    if len(parts) == 2 and all(parts) and not path.exists():
        return HubModel(name=slug, repo=name_or_path, title=name_or_path)
    raise LensError(
        f"unknown model {name_or_path!r}: use one of {', '.join(known)}, "
        "a Hugging Face repo id (org/name), a local model folder or a .gguf file"
    )
