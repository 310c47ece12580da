"""lens: the exact logit lens on open-weights LLMs (TransformerLens bridge), from GGUF, Hub or local weights.

The instrument only: it knows no claim, prompt set or report (those live in `suite/` and `findings/`). In floors,
each importing only those below it: `models` (what a model is, how it loads), `lenses` (ways to read a residual
vector), `reads` (running and reading a model), `remote` (NDIF); this module is the public API, `from lens import
...`. Each name is imported when first asked for, so that `import lens.errors` or the lens registry costs no torch.
"""

from importlib import import_module
from typing import Any

_PUBLIC = {
    "lens.errors": ("LensError",),
    "lens.lenses.lenses": ("EXACT", "RAW", "Lens", "LogitLens", "RawLens", "TunedLens"),
    "lens.lenses.tuned": ("tuned_lens",),
    "lens.models.loader": ("LoadedModel", "load", "release"),
    "lens.models.model": ("Model",),
    "lens.models.registry": ("ModelSpec", "registry", "resolve"),
    "lens.reads.grid": ("LensGrid", "lens_grid"),
    "lens.reads.records": ("LayerLens", "OutputLens", "Residuals", "Trace", "Wanted", "Watched"),
    "lens.reads.trace": ("collect", "output_probabilities", "read", "read_at", "trace"),
}
"""Module -> the public names it defines."""
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'lens' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
