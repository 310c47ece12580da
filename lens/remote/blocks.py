"""The trace blocks a remote job opens, one per kind of job (the lens, the model's own continuation, the grid,
patching), and how they travel: the functions they call shipped by value (NDIF has no `lens` package), the code's
version that kept results are filed under, and two backends that run a request here (NDIF simulated, or only
measured)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.abc
import inspect
import linecache
import sys
from typing import Any

from lens.errors import LensError
from lens.reads.backends import parts
from lens.remote import jobs
from lens.remote.errors import explain


def run_job(model: Any, job: jobs.Job, backend: Any) -> Any:
    """Open a job's trace with `backend`; what it saved where the backend ran it here (None where it went to
    NDIF). Only the names the block uses travel: the batch, the envoys, plain values, the functions of
    `lens.reads.intrace` by value, and nnsight's `save`, bound here (by reference to the module of the request's own
    tracer), so that no module object travels: NDIF would have to allow `import nnsight` to unpack it."""
    from nnsight import save

    from lens.reads.intrace import grid_figures, lens_figures, patched_p
    from lens.reads.reduce import margins

    ship_code()
    nn, args = model.nn, job.args
    layers, norm, head = parts(nn)
    out = None
    with contextlib.redirect_stdout(sys.stderr):  # nnsight's messages; stdout stays the result
        try:
            if job.kind == "lens":
                with nn.trace(dict(job.inputs), backend=backend, logits_to_keep=1):
                    out = save(
                        lens_figures(
                            nn,
                            layers,
                            norm,
                            head,
                            args["softcap"],
                            args["lenses"],
                            args["ids"],
                            args["output_ids"],
                            args["top_k"],
                            args["temperatures"],
                        )
                    )
            elif job.kind == "continuation":
                width = job.inputs["input_ids"].shape[1]
                with nn.generate(
                    dict(job.inputs),
                    backend=backend,
                    max_new_tokens=args["max_new_tokens"],
                    do_sample=False,
                    top_p=None,
                    top_k=None,
                    temperature=None,
                    pad_token_id=args["pad"],
                    return_dict_in_generate=True,
                    output_logits=True,
                ) as tracer:
                    generated = tracer.result  # not views: only these travel
                    out = save((generated.sequences[:, width:].clone(), margins(generated.logits)))
            elif job.kind == "grid":
                with nn.trace(dict(job.inputs), backend=backend):
                    out = save(grid_figures(layers, norm, head, args["softcap"]))
            elif job.kind == "patching":
                with nn.session(backend=backend):
                    rows = []
                    for inputs, k, where, target in zip(args["inputs"], args["k"], args["where"], args["target"]):
                        with nn.trace(dict(inputs), logits_to_keep=1):
                            rows.append(patched_p(nn, layers, k, where, target))
                    out = save(rows)
            else:
                raise ValueError(f"unknown job kind {job.kind!r}")
        except LensError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure of the remote call becomes one line
            raise explain(error, model.repo, model.host) from error
    return out


@functools.cache
def code_version() -> str:
    """A digest of the sources of the modules that build and run a job."""
    from lens.models import exact
    from lens.reads import intrace, reduce

    source = "".join(inspect.getsource(module) for module in (sys.modules[__name__], intrace, exact, reduce))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def ship_code() -> None:
    """Send the code a job calls (`lens.reads.intrace`, `lens.reads.reduce`, `lens.models.exact`) with each
    request, by value: NDIF has no `lens` package."""
    import nnsight

    from lens.models import exact
    from lens.reads import intrace, reduce

    for module in (intrace, exact, reduce):
        nnsight.register(module)


def request_bytes(model: Any, job: jobs.Job) -> int:
    """The size of the request a job sends, serialized here as nnsight would send it (nothing is sent)."""
    measure = _MeasuringBackend()
    run_job(model, job, measure)
    return measure.size


class _NoLensHere(importlib.abc.MetaPathFinder):
    """NDIF has no `lens` package: importing it fails while a simulated request is unpacked (an editable install
    would otherwise still find it)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "lens" or name.startswith("lens."):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the NDIF server)")
        return None


@contextlib.contextmanager
def _no_lens() -> Any:
    """`lens` unimportable, as on NDIF: its modules out of `sys.modules` and a finder that refuses them."""
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "lens" or name.startswith("lens.")}
    sys.meta_path.insert(0, finder := _NoLensHere())
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(hidden)


def _simulation_backend() -> type:
    """nnsight's local simulation of a remote request, run as NDIF runs one: unpacked with `lens` hidden, then the
    unpacked block and the unpacked copies of the functions it calls run (nnsight's own simulation runs the block
    against the functions here), `lens` still hidden; what the block saved comes back as a remote result does."""
    from nnsight.intervention.backends.local import LocalSimulationBackend

    class Simulated(LocalSimulationBackend):
        def __call__(self, tracer: Any) -> None:
            from nnsight.ndif import pull_env
            from nnsight.schema.request import RequestModel
            from nnsight.tracing.tracer import _saves
            from nnsight.tracing.util import push

            pull_env()
            blob = RequestModel.serialize(tracer, compress=False)
            filename = tracer.info.frame.f_code.co_filename
            line = linecache.cache.get(filename)  # unpacking registers the block's source under the file's name
            try:
                hidden = self._hide_local_modules()
                try:
                    restored = RequestModel.deserialize(
                        blob, self.model._remoteable_persistent_objects(), compress=False
                    )
                finally:
                    self._restore(hidden)
                with _no_lens():
                    restored.execute(restored.info.code)
                frame = restored.info.frame
                saved = {name: value for name, value in frame.f_locals.items() if id(value) in _saves()}
            finally:
                if line is None:
                    linecache.cache.pop(filename, None)
                else:
                    linecache.cache[filename] = line
            push(tracer.info.frame, saved)

        def _hide_local_modules(self) -> dict:
            hidden = super()._hide_local_modules()  # pops lens.* from sys.modules
            sys.meta_path.insert(0, finder := _NoLensHere())
            hidden["finder"] = finder
            return hidden

        def _restore(self, hidden: dict) -> None:
            sys.meta_path.remove(hidden.pop("finder"))
            super()._restore(hidden)

    return Simulated


def SimulatedNDIF(nn: Any) -> Any:  # noqa: N802 - builds an instance of a class made on first use
    """A backend that runs a remote request here as NDIF would: serialized, unpacked where no `lens` is, and the
    unpacked code run there (one device, no HTTP, no queue, no whitelist but the missing `lens`)."""
    return _simulation_backend()(nn)


class _MeasuringBackend:
    """A backend that serializes a request as nnsight sends it and keeps its size; nothing runs, nothing is sent."""

    size = 0

    def __call__(self, tracer: Any) -> None:
        from nnsight import CONFIG
        from nnsight.ndif import pull_env
        from nnsight.schema.request import RequestModel

        pull_env()
        self.size = len(RequestModel.serialize(tracer, CONFIG.API.COMPRESS))
