"""Where lens keeps what it fetches and computes: one per-user cache folder."""

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The per-user cache root (`LENS_CACHE_DIR` overrides it, e.g. for tests)."""
    override = os.environ.get("LENS_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("lens"))


def gguf_dir() -> Path:
    """Where embedded GGUF files are unpacked."""
    return cache_dir() / "gguf"


def dequantized_dir() -> Path:
    """Where dequantized GGUF weights are cached as safetensors, one folder per file hash and dtype."""
    return cache_dir() / "dequantized"
