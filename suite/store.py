"""The readings a run computes, kept on disk so that a rerun (after an interruption, or of the same selection) reads
them back instead of computing them again.

One folder per model and everything its readings depend on (`Store.open`): the model's weights (their id and
files), the device, dtype and backend they ran on, the library versions, and what the package of claims says its
readings read (the code that computes them, the prompts). One file per reading in it, named by the reading's key
and what else it depends on (a lens other than the logit lens: the lens itself); written whole or not at all
(write-then-rename), so a run killed at any moment leaves no half-written file. A file that cannot be read back is
computed again. The folders live in the lens cache (`readings/`; `LENS_READINGS_DIR` overrides it, e.g. for tests).
Readings are pickled (frozen dataclasses of plain values and tensors): only the user's own cache is read back, what
this code wrote there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens.paths import cache_dir

DIR_ENV = "LENS_READINGS_DIR"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf", "*.json", "*.model", "*.jinja")
"""The files of a model folder a reading depends on: weights, config, tokenizer, chat template."""
RECORD, DEPENDS = "record.json", "depends.json"
KEEP = 3
"""How many folders of one model's readings stay (by last use): a change of code or library versions leaves the
old ones stale; another dtype or device is worth keeping beside."""
MISSING = object()
"""What `Store.load` returns for a reading not kept (None may be a reading)."""


def readings_dir() -> Path:
    """Where every model's kept readings go."""
    override = os.environ.get(DIR_ENV)
    return Path(override) if override else cache_dir() / "readings"


def digest(value: Any) -> str:
    """A stable hex digest of plain values (JSON-able; tuples as lists)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def files_state(folder: Path | None, patterns: Iterable[str] = WEIGHT_FILES) -> list[tuple[str, int, int]]:
    """(name, size, modification time) of a model folder's files: other weights under the same id (a local folder
    trained again, a file replaced) give another state."""
    if folder is None or not folder.is_dir():
        return []
    found = {path for pattern in patterns for path in folder.glob(pattern) if path.is_file()}
    return sorted((path.name, (stat := path.stat()).st_size, stat.st_mtime_ns) for path in found)


def source_digest(paths: Iterable[Path]) -> str:
    """A digest of source files' contents (a folder: its .py and .toml files), in a stable order."""
    digest_ = hashlib.sha256()
    for path in paths:
        files = sorted([*path.rglob("*.py"), *path.rglob("*.toml")]) if path.is_dir() else [path]
        for file in files:
            digest_.update(file.name.encode())
            digest_.update(file.read_bytes())
    return digest_.hexdigest()


@dataclass(frozen=True)
class Store:
    """One model's kept readings, under everything they depend on."""

    folder: Path

    @classmethod
    def open(cls, model: str, depends: dict[str, Any], root: Path | None = None) -> Store:
        """The folder for `model`'s readings under `depends` (plain values), written beside them, readable, as
        `depends.json`. The model's folders under other dependencies (older code, other libraries, another dtype)
        are removed beyond the `KEEP` used last."""
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[:60]
        root = root or readings_dir()
        store = cls(root / f"{slug}-{digest(depends)[:16]}")
        stamp = store.folder / DEPENDS
        if stamp.is_file():
            with contextlib.suppress(OSError):
                os.utime(stamp)  # used now
        else:
            store._write(DEPENDS, json.dumps(depends, indent=1, sort_keys=True, default=repr).encode())
        _prune(root, slug)
        return store

    def load(self, key: Hashable, depends: Any = None) -> Any:
        """The reading kept under `key` (and `depends`), or MISSING where none is kept or it cannot be read."""
        path = self.folder / self._name(key, depends)
        try:
            kept = pickle.loads(path.read_bytes())
        except Exception:  # none kept, or a file from other code, or damaged: computed again (and rewritten)
            return MISSING
        if not isinstance(kept, dict) or kept.get("key") != repr((key, depends)):
            return MISSING
        return kept["value"]

    def save(self, key: Hashable, value: Any, depends: Any = None) -> None:
        """Keep a reading (atomically; one that cannot be kept is simply computed again next time)."""
        try:
            data = pickle.dumps({"key": repr((key, depends)), "value": value}, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a reading that holds something unpicklable: not kept
            return
        self._write(self._name(key, depends), data)

    def kept(self) -> int:
        """How many readings are kept here."""
        return sum(1 for _ in self.folder.glob("*.pkl"))

    def load_record(self) -> dict | None:
        """The model's record as its load made it (where, on what, in which dtype), or None."""
        try:
            record = json.loads((self.folder / RECORD).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def save_record(self, record: dict) -> None:
        self._write(RECORD, json.dumps(record, indent=1, sort_keys=True).encode())

    def _name(self, key: Hashable, depends: Any) -> str:
        words = key if isinstance(key, tuple) else (key,)
        readable = "-".join("".join(c if c.isalnum() else "_" for c in str(word)) for word in words)[:80]
        return f"{readable}-{hashlib.sha256(repr((key, depends)).encode()).hexdigest()[:16]}.pkl"

    def _write(self, name: str, data: bytes) -> None:
        """Write-then-rename: a run killed mid-write leaves no half file. A full disk loses the reading, nothing
        else."""
        path = self.folder / name
        partial = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            partial.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)


def _prune(root: Path, slug: str) -> None:
    """Remove the model's folders beyond the `KEEP` used last (a folder another run is using is only emptied of
    what it would compute again)."""
    folders = [
        folder for folder in root.glob(f"{slug}-*") if re.fullmatch(rf"{re.escape(slug)}-[0-9a-f]{{16}}", folder.name)
    ]

    def used(folder: Path) -> float:
        try:
            return (folder / DEPENDS).stat().st_mtime
        except OSError:
            return 0.0

    for folder in sorted(folders, key=used, reverse=True)[KEEP:]:
        shutil.rmtree(folder, ignore_errors=True)


def fingerprint(value: Any) -> str:
    """A digest of what a value computes with (a lens: its matrices and where it came from): tensors by dtype, shape
    and bytes, dataclasses field by field, containers item by item, other objects by their attributes."""
    hasher = hashlib.sha256()
    _feed(hasher, value, depth=0)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any, depth: int) -> None:
    import dataclasses

    import torch

    if depth > 8:
        hasher.update(type(value).__name__.encode())
    elif isinstance(value, torch.Tensor):
        hasher.update(f"{value.dtype}{tuple(value.shape)}".encode())
        hasher.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, (str, int, float, bool, type(None))):
        hasher.update(repr(value).encode())
    elif isinstance(value, dict):
        for k in sorted(value, key=repr):
            hasher.update(repr(k).encode())
            _feed(hasher, value[k], depth + 1)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(hasher, item, depth + 1)
    elif dataclasses.is_dataclass(value):
        hasher.update(type(value).__qualname__.encode())
        for field in dataclasses.fields(value):
            hasher.update(field.name.encode())
            _feed(hasher, getattr(value, field.name), depth + 1)
    elif hasattr(value, "__dict__"):
        hasher.update(type(value).__qualname__.encode())
        _feed(hasher, {k: v for k, v in vars(value).items() if not k.startswith("_")}, depth + 1)
    else:
        hasher.update(repr(value).encode())
