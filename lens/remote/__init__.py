"""Remote use: a Hugging Face Hub model run on NDIF (the National Deep Inference Fabric) through nnsight.

By job: `session` (connecting, submitting and polling jobs), `blocks` (the trace each job opens, and the code it
ships), `jobs` (queued, polled and kept on disk), `results` (their sizes, joined, checked), `model` (`RemoteModel`,
the `lens.models.model.Model` a claim reads) and `reads` (the reads it answers its own way, registered on the
generic reads of `lens.reads`). Imported here, so a `RemoteModel` never exists without its reads registered.
"""

from lens.remote import reads as _reads  # noqa: F401 - registers RemoteModel's reads
from lens.remote.model import PATCHES_PER_JOB, RemoteModel, simulated
from lens.remote.results import continuation_bytes, lens_bytes
from lens.remote.session import connect

__all__ = ["PATCHES_PER_JOB", "RemoteModel", "connect", "continuation_bytes", "lens_bytes", "simulated"]
