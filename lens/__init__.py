"""lens: the exact logit lens on open-weights LLMs (TransformerLens bridge), from GGUF, Hub or local weights."""

from lens.errors import LensError
from lens.loader import LoadedModel, load, release
from lens.registry import ModelSpec, registry, resolve
from lens.trace import LayerLens, OutputLens, Residuals, Trace, Watched, collect, read, trace

__all__ = [
    "LayerLens",
    "LensError",
    "LoadedModel",
    "ModelSpec",
    "OutputLens",
    "Residuals",
    "Trace",
    "Watched",
    "collect",
    "load",
    "read",
    "registry",
    "release",
    "resolve",
    "trace",
]
