"""GGUF files, dequantized by transformers once and cached as safetensors (per-user cache, written
atomically: a cache entry is whole or absent)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from lens.errors import LensError
from lens.models.fetch import sha256_file
from lens.paths import dequantized_dir


def dequantized(path: Path, sha256: str | None, download_command: str | None) -> tuple[Path, str]:
    """The cached dequantized copy of a GGUF file (made once, slow; reused, fast) and the file's hash.

    Args:
        sha256: the published hash, checked when given.
        download_command: what to run to fetch the file again, named when it is corrupt.
    """
    digest = sha256_file(path)
    if sha256 and digest != sha256:
        again = f"delete it and run `{download_command}`" if download_command else "fetch it again"
        raise LensError(f"{path} is corrupt (sha256 {digest[:12]}…, expected {sha256[:12]}…): {again}")
    entry = dequantized_dir() / digest[:16]
    if not (entry / "config.json").is_file():
        dequantize(path, entry)
    return entry, digest


def dequantize(gguf: Path, entry: Path) -> None:
    """Dequantize a GGUF file into a safetensors folder, atomically: all of it or nothing."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"lens: dequantizing {gguf.name} once (later loads use the cache)", file=sys.stderr)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as error:
        raise LensError(
            f"{gguf} is not a readable GGUF model ({first_line(error)}): re-download it, or check the file"
        ) from None
    model.config.architectures = [type(model).__name__]
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".tmp-{entry.name}-{os.getpid()}"
    try:
        # transformers refuses save_pretrained on GGUF-loaded models; the weights are plain tensors.
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.replace(entry)
    except OSError as error:
        raise LensError(f"could not write the cache at {entry} ({first_line(error)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def first_line(error: Exception) -> str:
    """An exception's first line, short enough for a one-line message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
