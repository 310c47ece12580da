"""lens: the exact logit lens on open-weights LLMs (TransformerLens bridge), from GGUF, Hub or local weights."""

from lens.errors import LensError
from lens.loader import LoadedModel, load, release
from lens.registry import ModelSpec, registry, resolve
from lens.trace import (
    LayerLens,
    LensGrid,
    OutputLens,
    Residuals,
    Trace,
    Watched,
    collect,
    lens_grid,
    read,
    read_at,
)

__all__ = [
    "LayerLens",
    "LensGrid",
    "LensError",
    "LoadedModel",
    "ModelSpec",
    "OutputLens",
    "Residuals",
    "Trace",
    "Watched",
    "collect",
    "lens_grid",
    "load",
    "read",
    "registry",
    "release",
    "read_at",
    "resolve",
]
