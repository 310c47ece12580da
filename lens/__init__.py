"""lens: the exact logit lens on open-weights LLMs (TransformerLens bridge), from GGUF, Hub or local weights.

The instrument only: it knows no claim, prompt set or report (those live in `suite/` and `findings/`). In floors,
each importing only those below it: `models` (what a model is, how it loads), `lenses` (ways to read a residual
vector), `reads` (running and reading a model), `remote` (NDIF); this module re-exports the public API.
"""

from lens.errors import LensError
from lens.lenses.lenses import EXACT, RAW, Lens, LogitLens, RawLens, TunedLens
from lens.lenses.tuned import tuned_lens
from lens.models.loader import LoadedModel, load, release
from lens.models.model import Model
from lens.models.registry import ModelSpec, registry, resolve
from lens.reads.grid import LensGrid, lens_grid
from lens.reads.records import LayerLens, OutputLens, Residuals, Trace, Wanted, Watched
from lens.reads.trace import collect, output_probabilities, read, read_at, trace

__all__ = [
    "EXACT",
    "RAW",
    "LayerLens",
    "Lens",
    "LensError",
    "LensGrid",
    "LoadedModel",
    "LogitLens",
    "Model",
    "ModelSpec",
    "OutputLens",
    "RawLens",
    "Residuals",
    "Trace",
    "TunedLens",
    "Wanted",
    "Watched",
    "collect",
    "lens_grid",
    "load",
    "output_probabilities",
    "read",
    "read_at",
    "registry",
    "release",
    "resolve",
    "trace",
    "tuned_lens",
]
