"""The named models (from models.toml) and how any other model name or path is understood."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from lens.errors import LensError
from lens.paths import gguf_dir


@dataclass(frozen=True)
class ModelSpec:
    """Where one model's weights come from."""

    name: str
    """Short name: command-line name, pytest marker, report column."""
    source: str
    """`hub` (Hugging Face cache), `pypi` (GGUF inside PyPI wheels), `local` (HF folder) or `gguf` (file)."""
    title: str = ""
    repo: str | None = None
    """Hugging Face repo id, for `hub` models."""
    path: Path | None = None
    """Local folder or .gguf file, for `local` and `gguf` models."""
    gated: bool = False
    embedded: bool = False
    packages: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    file: str | None = None
    sha256: str | None = None
    size_gb: float | None = None

    @property
    def gguf_path(self) -> Path | None:
        """The .gguf file this model loads from, if it is a GGUF model."""
        if self.source == "pypi":
            return gguf_dir() / str(self.file)
        if self.source == "gguf":
            return self.path
        return None

    def describe(self) -> str:
        """One line naming the model's source, for reports and messages."""
        if self.source == "hub":
            where = f"Hugging Face {self.repo}"
        elif self.source == "pypi":
            parts = f" +{len(self.packages) - 1} parts" if len(self.packages) > 1 else ""
            where = f"PyPI {self.packages[0]}{parts}"
        else:
            where = f"{'folder' if self.source == 'local' else 'file'} {self.path}"
        return f"{self.title or self.name} ({where})"


@cache
def registry() -> dict[str, ModelSpec]:
    """All named models, in the order of models.toml."""
    data = tomllib.loads(files("lens").joinpath("models.toml").read_text())
    specs = {}
    for name, entry in data.items():
        entry = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        specs[name] = ModelSpec(name=name, **entry)
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
        return ModelSpec(name=slug, source="gguf", path=path.resolve(), title=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LensError(f"{path} is not a Hugging Face model folder (it has no config.json)")
        return ModelSpec(name=slug, source="local", path=path.resolve(), title=path.name)
    parts = name_or_path.split("/")
    if len(parts) == 2 and all(parts) and not path.exists():
        return ModelSpec(name=slug, source="hub", repo=name_or_path, title=name_or_path)
    raise LensError(
        f"unknown model {name_or_path!r}: use one of {', '.join(known)}, "
        "a Hugging Face repo id (org/name), a local model folder or a .gguf file"
    )
