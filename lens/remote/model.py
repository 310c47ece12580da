"""Remote use: a Hugging Face Hub model run on NDIF (the National Deep Inference Fabric) through nnsight.

The weights never come here. nnsight builds the model on the meta device from its config (and loads its
tokenizer) from the Hub, and ships each job's trace to NDIF, which runs it on the model it hosts. What a job
computes runs there (`lens.reads.intrace`): the lens at the last position, reduced to what the claims read
(`lens.reads.reduce`: followed tokens' logits and ranks, top-k, entropy and KL per temperature, the last block's
difference from the output), the model's own greedy continuation, the logit-lens grid, activation patching
(p(answer) per patched row); so what comes back is figures, a few kilobytes a prompt, never activations
(attention patterns are not read there: `lens.reads.attention`). Jobs are queued without waiting, polled and kept on
disk (`lens.remote.jobs`). A model here can take the same path, each request serialized, unpacked where no `lens` is
and the unpacked code run here (`simulated`: one device, no HTTP, queue or sandbox).

The API key comes from the environment (`NDIF_API_KEY`) or from nnsight's configuration file, written once by
`nnsight login` (nnsight's `CONFIG.set_default_api_key`). No key, no network, a model NDIF does not run now for
an ordinary key (only a HOT, RUNNING, dedicated deployment of the same model key is; `NDIF_HOTSWAPPING=1` for a
key with hotswapping access): one line each (`LensError`), before anything is sent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.abc
import inspect
import json
import linecache
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lens.remote import jobs
from lens.reads.backends import nnsight_model, parts
from lens.models.device import RELATIVE_TOLERANCE
from lens.errors import LensError
from lens.reads.reduce import BATCH
from lens.models.registry import HubModel, ModelSpec, resolve
from lens.tokens import encode, encode_ids

KEY_URL = "https://login.ndif.us"
"""Where an NDIF API key comes from."""
SCHEDULE_URL = "https://nnsight.net/status/"
"""Where NDIF's refusals point for the models it runs and when (its scheduled models)."""
NOT_DEDICATED = "Model is not dedicated and hotswapping is not supported for this API key"
"""NDIF's words for a request an ordinary key makes of a model that is not dedicated."""
TOO_OLD = re.compile(r"Client nnsight version (\S+) is incompatible with the server nnsight version\. "
                     r"The minimum supported version is (\S+)\. ")
"""NDIF's refusal of a client older than its own nnsight (its `validate_nnsight_version`)."""
PYTHON_REFUSED = re.compile(r"Client python version (\S+) (?:is incompatible with the server\. The minimum supported "
                            r"version is|does not match server version:) (\d+(?:\.\d+)*)")
"""NDIF's refusal of the client's Python (its `validate_python_version`): older than its minimum, which defaults to
the server's own Python (3.12 in its environment); an older server wanted the same minor version exactly."""


PATCHES_PER_JOB = 8
"""Patchings per session job: each is one forward of (1 + 1 + blocks x positions) rows."""
NDIF_DTYPE = torch.bfloat16
"""The dtype NDIF runs its models in (its ModelActor's default, under autocast)."""


@dataclass
class RemoteModel:
    """A Hub model hosted by NDIF, ready for the lens: no weights here, only its config and tokenizer."""

    spec: ModelSpec
    repo: str
    nn: Any
    """nnsight's TransformersModel, built on the meta device (never dispatched here)."""
    tokenizer: Any
    n_layers: int
    n_ctx: int
    softcap: float | None
    host: str
    via: bool | str = True
    """nnsight's `remote=`: True runs on NDIF; "local" is nnsight's dry run here of exactly that request
    (serialized, run back where no `lens` package is, against a model loaded here: `simulated`)."""
    model_key: str | None = None
    """nnsight's name of the model to NDIF (class, the Hub's repo id, revision, task)."""
    dtype: torch.dtype = NDIF_DTYPE
    weights_id: str = ""
    """What the results are of: NDIF's model key, or the simulated model's weights."""
    remote = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> str:
        """Where it runs, as a report says it: "ndif (api.ndif.us)"."""
        return f"ndif ({self.host.split('://')[-1]})" if self.via is True else "ndif, simulated here"

    @property
    def identity(self) -> str:
        """The model its jobs run on, as the cache of finished jobs knows it."""
        return self.model_key or f"{self.repo}@{self.weights_id}"

    @property
    def code_version(self) -> str:
        """A digest of the code that builds and runs its jobs (`lens.remote`, `lens.reads.intrace`, `lens.reads.reduce`,
        `lens.lenses.lenses`): kept results of other code are not reused."""
        return _code_version()

    @property
    def generation_config(self) -> Any:
        return self.nn._module.generation_config

    # ---- the jobs ------------------------------------------------------------------------------------------------

    def reduce_lens(self, sequences: Sequence[Sequence[int]], ids: dict[str, tuple[tuple[int, ...], ...]],
                    output_ids: tuple[tuple[int, ...], ...], top_k: int, temperatures: tuple[float, ...],
                    batch_size: int = BATCH) -> dict[str, dict[str, torch.Tensor]]:
        """The lens of each token sequence, read after its last token, reduced on NDIF (`lens.reads.reduce`) for each
        lens named in `ids` (per prompt the token ids it follows), one job per batch."""
        from lens.reads.trace import _padded

        jobs_ = []
        for start in range(0, len(sequences), batch_size):
            stop = min(len(sequences), start + batch_size)
            batch = encode_ids(self.tokenizer, [list(s) for s in sequences[start:stop]], self.n_ctx)
            follow = {name: _padded(rows[start:stop]) for name, rows in ids.items()}
            extra = _padded(output_ids[start:stop])
            args = {"lenses": tuple(ids), "ids": follow, "output_ids": extra, "top_k": top_k,
                    "temperatures": tuple(temperatures), "softcap": self.softcap}
            jobs_.append(jobs.Job("lens", dict(batch), args, stop - start, _lens_bytes(self.n_layers, args)))
        results = jobs.run(self, jobs_, f"the lens over {jobs.count(len(sequences), 'prompt')}")
        joined = {name: _join([result[name] for result in results]) for name in ids}
        if "exact" in joined:
            self._require_exact(joined["exact"])
        return joined

    def continuations(self, prompts: Sequence[str], max_new_tokens: int,
                      batch_size: int = BATCH) -> tuple[list[list[int]], list[list[float]]]:
        """Each prompt's greedy continuation by the model on NDIF (`max_new_tokens` token ids) and its margins
        (`lens.reads.reduce.margins`), one job per batch."""
        jobs_ = []
        for start in range(0, len(prompts), batch_size):
            batch = encode(self.tokenizer, list(prompts[start:start + batch_size]), self.n_ctx)
            n = batch["input_ids"].shape[0]
            pad = self.tokenizer.pad_token_id
            args = {"max_new_tokens": max_new_tokens, "pad": self.tokenizer.eos_token_id if pad is None else pad}
            jobs_.append(jobs.Job("continuation", dict(batch), args, n,
                                  continuation_bytes(n, max_new_tokens)))
        results = jobs.run(self, jobs_, f"its own continuation of {jobs.count(len(prompts), 'prompt')}")
        return ([row for ids, _ in results for row in ids.tolist()],
                [row for _, margin in results for row in margin.tolist()])

    def grid(self, prompt: str) -> dict[str, torch.Tensor]:
        """The exact lens's top token and its probability at every (block, position) of one prompt, on NDIF."""
        batch = encode(self.tokenizer, [prompt], self.n_ctx)
        cells = self.n_layers * batch["input_ids"].shape[1]
        (result,) = jobs.run(self, [jobs.Job("grid", dict(batch), {"softcap": self.softcap}, 1,
                                             jobs.saved_bytes(cells * 8, 2))],
                             "the logit-lens grid")
        return result

    def patch(self, cases: Sequence[Any]) -> list[torch.Tensor]:
        """Activation patching of each case (`lens.reads.patching.Case`) on NDIF: one forward per case whose batch holds
        the clean prompt, the corrupted one and a corrupted row per (block, position) patched from the clean row
        in the same pass; `PATCHES_PER_JOB` cases per session job; p(answer) per row comes back."""
        jobs_ = []
        for start in range(0, len(cases), PATCHES_PER_JOB):
            chunk = cases[start:start + PATCHES_PER_JOB]
            inputs, rows = [], 0
            for case in chunk:
                k = len(case.positions)
                ids = torch.cat([case.clean_ids, case.corrupt_ids, case.corrupt_ids.expand(self.n_layers * k, -1)])
                inputs.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
                rows += ids.shape[0]
            args = {"inputs": inputs, "k": [len(c.positions) for c in chunk],
                    "where": [torch.tensor(c.positions) for c in chunk], "target": [c.target for c in chunk]}
            jobs_.append(jobs.Job("patching", {}, args, len(chunk), jobs.saved_bytes(4 * rows, len(chunk))))
        results = jobs.run(self, jobs_, f"patching {jobs.count(len(cases), 'prompt')}")
        return [p for result in results for p in result]

    def submit(self, job: jobs.Job) -> str | jobs.Done:
        """Send a job to NDIF without waiting (its id); a simulated one runs here at once (`jobs.Done`)."""
        if self.via == "local":
            return jobs.Done(self._run(job, SimulatedNDIF(self.nn)))
        backend = self._backend()
        self._run(job, backend)
        return backend.job_id

    def poll(self, job_id: str) -> Any:
        """A submitted job's result, or `jobs.Pending` with its status while it is not back (None where NDIF has no
        record of it: nnsight's poll answers a 404 with None); one line where NDIF failed it (`jobs.JobFailed`),
        where the link to its result was refused (`jobs.ResultRefused`), or where NDIF could not be asked."""
        import httpx
        from nnsight.intervention.backends.remote import RemoteError

        backend = self._backend(job_id)
        try:
            result = backend.poll()
        except RemoteError as error:  # its ERROR status: NDIF ran the job and failed it
            raise jobs.JobFailed(str(self._explain(error))) from error
        except httpx.HTTPStatusError as error:
            raise self._polling_error(job_id, error) from error
        except Exception as error:  # noqa: BLE001 - every failure of the remote call becomes one line
            raise self._explain(error) from error
        status = None if backend.status is None else str(getattr(backend.status, "value", backend.status))
        if result is None and status == "COMPLETED":
            raise jobs.JobFailed(f"NDIF completed job {job_id} on {self.repo} without a result: run again to send it "
                                 "again")
        if result is None:
            return jobs.Pending(status)
        return result["out"]

    def _polling_error(self, job_id: str, error: Any) -> LensError:
        """One line for an HTTP error while a job is polled: at NDIF's /response (a refused key, or 5xx: the job is
        still there), or at the link to its result (kept two hours after the job completes: not the API key)."""
        code, reason = error.response.status_code, error.response.reason_phrase
        if not str(error.request.url).startswith(f"{self.host}/response/"):
            return jobs.ResultRefused(f"the link to the result of job {job_id} was refused ({code} {reason}): NDIF "
                                      "keeps a result 2 hours after its job completes")
        if code in (401, 403):
            return LensError(f"NDIF refused the API key while job {job_id} was polled ({code} {reason}): check "
                             f"NDIF_API_KEY (get one at {KEY_URL})")
        return LensError(f"NDIF at {self.host} answered {code} {reason} while job {job_id} was polled: try again "
                         "later (https://discuss.ndif.us)")

    def _backend(self, job_id: str | None = None) -> Any:
        """nnsight's remote backend for a job sent without waiting (or polled, by its id), its display off."""
        from nnsight.intervention.backends.display import StatusDisplay
        from nnsight.intervention.backends.remote import RemoteBackend

        try:
            key = self.model_key or self.nn.to_model_key()  # nnsight asks the Hub for the repo's spelling
        except Exception as error:  # noqa: BLE001 - whatever the Hub's client raises
            raise self._explain(error) from error
        backend = RemoteBackend(key, host=self.host, blocking=False, job_id=job_id)
        backend.display = StatusDisplay(enabled=False)  # a line per job instead (`lens.remote.jobs`)
        return backend

    def request_bytes(self, job: jobs.Job) -> int:
        """The size of the request a job sends, serialized here as nnsight would send it (nothing is sent)."""
        measure = _MeasuringBackend()
        self._run(job, measure)
        return measure.size

    def _run(self, job: jobs.Job, backend: Any) -> Any:
        """Open a job's trace with `backend`; what it saved where the backend ran it here (None where it went to
        NDIF). Only the names the block uses travel: the batch, the envoys, plain values, the functions of
        `lens.reads.intrace` by value, and nnsight's `save`, bound here (by reference to the module of the request's own
        tracer), so that no module object travels: NDIF would have to allow `import nnsight` to unpack it."""
        from nnsight import save

        from lens.reads.intrace import grid_figures, lens_figures, patched_p
        from lens.reads.reduce import margins

        ship_code()
        nn, args = self.nn, job.args
        layers, norm, head = parts(nn)
        out = None
        with contextlib.redirect_stdout(sys.stderr):  # nnsight's messages; stdout stays the result
            try:
                if job.kind == "lens":
                    with nn.trace(dict(job.inputs), backend=backend, logits_to_keep=1):
                        out = save(lens_figures(
                            nn, layers, norm, head, args["softcap"], args["lenses"], args["ids"], args["output_ids"],
                            args["top_k"], args["temperatures"]))
                elif job.kind == "continuation":
                    width = job.inputs["input_ids"].shape[1]
                    with nn.generate(dict(job.inputs), backend=backend, max_new_tokens=args["max_new_tokens"],
                                     do_sample=False, top_p=None, top_k=None, temperature=None,
                                     pad_token_id=args["pad"], return_dict_in_generate=True,
                                     output_logits=True) as tracer:
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
                raise self._explain(error) from error
        return out

    def _explain(self, error: Exception) -> LensError:
        """One line for a failed remote run: unreachable, refused key, model not running, or the server's words."""
        import websocket
        from nnsight.intervention.backends.remote import RemoteError

        text, lowered = _first_line(error), _first_line(error).lower()
        if _raised_by_the_hub(error):  # nnsight names the model by its Hub id when the trace starts
            return _hub_error(self.repo, error)
        version = TOO_OLD.search(str(error))
        if version:
            client, minimum = version.groups()
            return LensError(f"NDIF needs nnsight >= {minimum} (this environment has {client}): try it with "
                             f"`./run upgrade-check nnsight=={minimum}`, then keep it with "
                             "`./run upgrade-check --take`")
        python = PYTHON_REFUSED.search(str(error))
        if python:
            return _python_refused(*python.groups(), exactly="does not match" in str(error))
        if "not dedicated" in lowered or "hotswap" in lowered:  # NDIF's words for a model it does not run now
            return LensError(f"NDIF does not run {self.repo} for this API key now ({text}): see {SCHEDULE_URL} "
                             "for when it is scheduled")
        if any(word in lowered for word in ("api key", "api-key", "unauthorized", " 401")):  # NDIF's words (a 401)
            return LensError(f"NDIF refused the API key ({text}): check NDIF_API_KEY (get one at {KEY_URL})")
        if isinstance(error, websocket.WebSocketBadStatusException):
            return LensError(f"NDIF at {self.host} refused the connection ({text}): try again later")
        cause = error.__cause__ if isinstance(error, RemoteError) else error  # nnsight wraps a failed send
        if cause is not None and _is_network_error(cause):
            return LensError(f"cannot reach NDIF at {self.host} ({_first_line(cause)}): check the network connection")
        return LensError(f"NDIF could not run {self.repo}: {text}")

    def _require_exact(self, reduced: dict[str, torch.Tensor]) -> None:
        """The check every local load makes: the lens at the last block is the model's output (as NDIF ran it)."""
        relative = float((reduced["final_diff"] / reduced["out_max_abs"].clamp_min(1e-12)).max())
        tolerance = RELATIVE_TOLERANCE.get(self.dtype, RELATIVE_TOLERANCE[torch.bfloat16])
        if not relative <= tolerance:
            raise LensError(f"the lens is not exact on {self.repo} as NDIF runs it: its last block differs from the "
                            f"output by {relative:.1e} of the logits' scale (tolerance {tolerance:.0e})")


@functools.cache
def _code_version() -> str:
    """A digest of the sources of the modules that build and run a job."""
    from lens.lenses import lenses
    from lens.reads import intrace, reduce

    source = "".join(inspect.getsource(module) for module in (sys.modules[__name__], intrace, lenses, reduce))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def ship_code() -> None:
    """Send the code a job calls (`lens.reads.intrace`, `lens.reads.reduce`, `lens.lenses.lenses`) with each request, by value: NDIF
    has no `lens` package."""
    import nnsight

    from lens.lenses import lenses
    from lens.reads import intrace, reduce

    for module in (intrace, lenses, reduce):
        nnsight.register(module)


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
                    restored = RequestModel.deserialize(blob, self.model._remoteable_persistent_objects(),
                                                        compress=False)
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


def simulated(model: Any) -> RemoteModel:
    """A model loaded here, taken as if NDIF ran it: every job goes through the remote path (serialized, unpacked
    where no `lens` package is, the unpacked code run on this model), so its figures are those a remote run
    computes (tests, and `LENS_NDIF=simulate`)."""
    spec = model.spec
    nn = nnsight_model(model)
    return RemoteModel(spec=spec, repo=getattr(spec, "repo", spec.name), nn=nn, tokenizer=model.tokenizer,
                       n_layers=model.n_layers, n_ctx=model.n_ctx, softcap=model.softcap, host="here", via="local",
                       dtype=model.dtype, weights_id=model.weights_id)


def _lens_bytes(n_layers: int, args: dict[str, Any]) -> int:
    """The size of a lens job's result, from the shapes it will have."""
    b, candidates = args["output_ids"].shape
    followed = {name: follow.shape[1] for name, follow in args["ids"].items()}
    return lens_bytes(n_layers, b, followed, args["top_k"], len(args["temperatures"]), candidates)


def continuation_bytes(prompts: int, max_new_tokens: int) -> int:
    """About what a continuation job brings back: per prompt and step a token id (int64) and its margin
    (float32)."""
    return jobs.saved_bytes(prompts * max_new_tokens * (8 + 4), 2)


def lens_bytes(n_layers: int, prompts: int, followed: dict[str, int], top_k: int = 5, temperatures: int = 1,
               candidates: int = 0) -> int:
    """The size of a lens job's result (`lens.reads.reduce.reduce` per lens, as saved): `prompts` prompts, each lens
    following `followed[lens]` tokens, with the output logits of `candidates` more ids."""
    total, tensors = 4 * prompts * candidates, 1
    for f in followed.values():
        total += 4 * prompts * (n_layers * (2 * f + 2 * top_k + 3 * temperatures) + 2 * f + 2 * top_k
                                + 2 * temperatures + 2)
        tensors += 15
    return jobs.saved_bytes(total, tensors)


def _join(parts_: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batches' reductions as one: concatenated over prompts, a batch that follows fewer tokens padded (its
    extra columns are never read: each prompt's columns are named by its own ids)."""
    joined = {}
    for key in parts_[0]:
        tensors = [part[key] for part in parts_]
        width = max(t.shape[-1] for t in tensors) if tensors[0].dim() > 1 else None
        if width is not None:
            tensors = [torch.cat([t, t.new_zeros(*t.shape[:-1], width - t.shape[-1])], dim=-1) for t in tensors]
        joined[key] = torch.cat(tensors)
    return joined


def connect(name_or_path: str) -> RemoteModel:
    """A Hub model to run on NDIF: checks the API key, that NDIF is reachable and hosts the model, then builds
    the model from its config on the meta device (its weights are never downloaded)."""
    spec = resolve(name_or_path)
    if not isinstance(spec, HubModel):
        raise LensError(f"--remote runs Hugging Face Hub models on NDIF by repo id (org/name); {name_or_path} is "
                        f"{spec.where()}: drop --remote to run it here")
    from nnsight import CONFIG

    key = os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY
    if not key:
        raise LensError(f"a run on NDIF needs an API key: set NDIF_API_KEY=... (get one at {KEY_URL}), "
                        f"or store it once with `{_nnsight_command()} login`")
    host = (os.environ.get("NDIF_HOST") or CONFIG.API.HOST).rstrip("/")
    CONFIG.API.APIKEY, CONFIG.API.HOST = key, host  # what nnsight's remote backend sends, this process only
    deployments = ndif_deployments(host)
    nn = _meta_model(spec.repo)
    model_key = _model_key(nn, spec.repo)
    if os.environ.get("NDIF_HOTSWAPPING", "0") == "0":  # a hotswapping key: NDIF deploys what it is asked for
        _require_hosted(model_key, deployments, spec.repo)
    config = nn._module.config
    cap = getattr(config, "final_logit_softcapping", None)
    return RemoteModel(
        spec=spec, repo=spec.repo, nn=nn, tokenizer=nn.tokenizer, n_layers=int(config.num_hidden_layers),
        n_ctx=int(getattr(config, "max_position_embeddings", None) or nn.tokenizer.model_max_length),
        softcap=float(cap) if cap else None, host=host, model_key=model_key, weights_id=model_key,
    )


@dataclass(frozen=True)
class Deployment:
    """One entry of NDIF's /status, as its controller writes it: a deployed model under its Ray actor's name
    (`ModelActor:<model_key>`), a downloaded one under its repo id."""

    repo_id: str
    level: str
    """HOT (on GPUs), WARM (cached in CPU memory) or COLD (downloaded only)."""
    state: str | None
    """A HOT one's `application_state`: RUNNING, DEPLOYING or UNHEALTHY; None for the others."""
    dedicated: bool
    """Deployed for every key; NDIF runs a model that is not only for keys with hotswapping access."""
    model_key: str | None
    """nnsight's key of the deployment ("import.path.Class:{json}"); None for a COLD one."""

    @property
    def served(self) -> bool:
        """Whether NDIF runs a request of an ordinary API key on it now."""
        return self.level == "HOT" and self.state == "RUNNING" and self.dedicated

    def where(self) -> str:
        """Its level, and its state where it has one: "HOT, DEPLOYING", "COLD"."""
        return f"{self.level}, {self.state}" if self.state else self.level


def ndif_deployments(host: str) -> list[Deployment] | None:
    """The deployments NDIF lists at `host` (its /status), or None where the answer is not that list."""
    import httpx

    try:
        response = httpx.get(f"{host}/status", timeout=httpx.Timeout(10.0, read=30.0))
        response.raise_for_status()
        deployments = response.json().get("deployments")
    except httpx.TransportError as error:
        raise LensError(f"cannot reach NDIF at {host} ({_first_line(error)}): check the network connection") from error
    except httpx.HTTPStatusError as error:
        raise LensError(f"NDIF at {host} answered {error.response.status_code}: try again later "
                        "(https://discuss.ndif.us)") from error
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None
    if not isinstance(deployments, dict):
        return None
    return [
        Deployment(
            repo_id=str(entry.get("repo_id", name)), level=str(entry.get("deployment_level", "")).upper(),
            state=entry.get("application_state"), dedicated=bool(entry.get("dedicated")),
            model_key=entry.get("model_key") or (name.removeprefix("ModelActor:") if name.startswith("ModelActor:")
                                                 else None),
        )
        for name, entry in deployments.items() if isinstance(entry, dict)
    ]


def hosted_models(deployments: list[Deployment]) -> list[str]:
    """The repo ids NDIF runs now for an ordinary API key."""
    return sorted({d.repo_id for d in deployments if d.served})


def _require_hosted(model_key: str, deployments: list[Deployment] | None, asked: str) -> None:
    """Refuse, in one line, a model (`asked` for, named by `model_key`) NDIF would not run now for an ordinary
    key: it runs a request on a HOT, RUNNING, dedicated deployment of the same key (class, the Hub's repo id,
    revision, task)."""
    if deployments is None:
        return
    ours = _key_parts(model_key)
    repo = str(ours[1].get("repo_id", model_key))
    listed = [d for d in deployments if d.repo_id == repo]
    same = [d for d in listed if d.model_key and _key_parts(d.model_key) == ours]
    if any(d.served for d in same):
        return
    running = hosted_models(deployments)
    now = ", ".join(running[:6]) + (", ..." if len(running) > 6 else "") if running else "none"
    if not listed:
        alias = "" if asked == repo else f" (the Hub's name for {asked})"
        raise LensError(f"NDIF does not host {repo}{alias}: only the models NDIF runs now run there (now: {now})")
    if not same and any(d.model_key for d in listed):
        theirs = sorted({_key_summary(d.model_key) for d in listed if d.model_key})
        raise LensError(f"NDIF runs {repo} only as {' and '.join(theirs)}, not as {_key_summary(model_key)} that "
                        "nnsight sends: run it here instead")
    best = min(same or listed, key=lambda d: (d.level != "HOT", d.state != "RUNNING"))
    if best.level == "HOT" and best.state == "RUNNING":
        raise LensError(f"NDIF runs {repo} now but not as a dedicated model, which it refuses to an ordinary API key "
                        f"(\"{NOT_DEDICATED}\"): see {SCHEDULE_URL} for when it is scheduled, or set "
                        "NDIF_HOTSWAPPING=1 if your key has hotswapping access")
    wait = {"DEPLOYING": "try again in a few minutes", "UNHEALTHY": "try again later (https://discuss.ndif.us)"}
    raise LensError(f"NDIF lists {repo} but it is not running now ({best.where()}): "
                    + wait.get(best.state or "", f"see {SCHEDULE_URL} for when it is scheduled (running now: {now})"))


def _key_parts(model_key: str) -> tuple[str, dict]:
    """nnsight's model key "import.path.Class:{json}" as its class path and its fields."""
    path, _, fields = model_key.partition(":")
    try:
        parsed = json.loads(fields)
    except ValueError:
        parsed = None
    return path, parsed if isinstance(parsed, dict) else {"key": fields}


def _key_summary(model_key: str) -> str:
    """A model key in words: its class, its task and a revision other than main."""
    path, fields = _key_parts(model_key)
    revision = fields.get("revision") or "main"
    return (f"{path.rsplit('.', 1)[-1]} for {fields.get('task') or 'no task'}"
            + ("" if revision == "main" else f" at revision {revision}"))


def _model_key(nn: Any, repo: str) -> str:
    """nnsight's name of the model to NDIF: its repo id as the Hub spells it, asked of the Hub once."""
    try:
        return nn.to_model_key()
    except Exception as error:  # noqa: BLE001 - whatever the Hub's client raises
        raise _hub_error(repo, error) from error


def _meta_model(repo: str) -> Any:
    """nnsight's model for a Hub repo, on the meta device: its config and tokenizer only, no weights."""
    from huggingface_hub.errors import GatedRepoError
    from nnsight import TransformersModel

    try:
        return TransformersModel(repo, task="text-generation")  # not dispatched: nothing but config + tokenizer
    except GatedRepoError as error:
        raise LensError(f"{repo} is gated: accept its licence on https://huggingface.co/{repo} and log in with "
                        "`hf auth login` (a run on NDIF reads its config and tokenizer, never the weights)") from error
    except (OSError, ValueError) as error:
        raise LensError(f"cannot read {repo}'s config and tokenizer from the Hugging Face Hub "
                        f"({_first_line(error)}): a run on NDIF needs them (never the weights)") from error


def _python_refused(client: str, needed: str, exactly: bool = False) -> LensError:
    """One line for NDIF's refusal of this Python: which Python to make the environment with, and how."""
    wants = f"Python {needed}" + ("" if exactly else " or newer")
    return LensError(f"NDIF refuses Python {client}: it needs {wants}; make the project's environment with "
                     f"it: `rm -rf .venv && python{needed} -m venv .venv`, then `./run` installs the locked libraries "
                     "into it")


def _nnsight_command() -> str:
    """How to run nnsight's command line here (it sits beside this Python, e.g. in the project's .venv)."""
    beside = Path(sys.executable).parent / "nnsight"
    if not beside.exists():
        return "nnsight"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def _hub_error(repo: str, error: BaseException) -> LensError:
    """One line for a failure of the Hugging Face Hub while nnsight names the model to NDIF."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    text = _first_line(error)
    if isinstance(error, OfflineModeIsEnabled):
        return LensError(f"a run on NDIF asks the Hugging Face Hub how it spells {repo} (NDIF knows models by that "
                         "name), but HF_HUB_OFFLINE is set: unset it")
    if isinstance(error, HfHubHTTPError):
        return LensError(f"the Hugging Face Hub refused to name {repo} to NDIF ({text}): check the repo id, and for "
                         "a gated model accept its licence and log in with `hf auth login`")
    return LensError(f"cannot reach the Hugging Face Hub to name {repo} to NDIF ({text}): check the network "
                     "connection")


def _raised_by_the_hub(error: BaseException) -> bool:
    """Whether an error was raised inside huggingface_hub (nnsight asks the Hub for the model's name)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, (HfHubHTTPError, OfflineModeIsEnabled)):
        return True
    frame = error.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).split(".")[0] == "huggingface_hub":
            return True
        frame = frame.tb_next
    return False


def _is_network_error(error: BaseException) -> bool:
    import httpx
    import websocket

    return isinstance(error, (httpx.TransportError, websocket.WebSocketException, ConnectionError, TimeoutError,
                              OSError))


def _first_line(error: BaseException) -> str:
    """The line that names an error: its first, or where it is a Python traceback (an NDIF ERROR's description
    starts with one), the exception line that ends the last traceback in it."""
    lines = (str(error).strip() or type(error).__name__).splitlines()
    return (_exception_line(lines) or lines[0]).strip()[:300]


def _exception_line(lines: list[str]) -> str | None:
    """The exception line of the last traceback in `lines` (the first unindented line after its frames)."""
    found, in_frames = None, False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_frames = True
        elif in_frames and line.strip() and not line[0].isspace():
            found, in_frames = line, False
    return found
