"""Remote jobs: one queued NDIF job per batch, sent without waiting and polled, each finished one kept on disk.

`run` says first what a phase will cost (prompts, jobs, bytes sent and to come back), then keeps up to
`IN_FLIGHT` jobs in NDIF's queue, polls them, prints one line per finished job and writes its result to the lens
cache under a key of the model, the job's inputs and the version of the code that builds and runs it (the
runner's `code_version`). A job submitted but not yet back is noted there too, so an interrupted run polls it again
where it stopped rather than sending it twice; a changed request or changed code is a new key.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from lens.paths import cache_dir

IN_FLIGHT = 4
"""Jobs in NDIF's queue at once: enough to keep it busy, few enough to leave room for everyone else's."""
POLL_SECONDS = 3.0
"""How long to wait between two rounds of polling."""
SAVE_BYTES, TENSOR_BYTES = 1300, 330
"""What torch.save adds to a result (NDIF stores it so): about 1.3 KB, and about 330 bytes a tensor."""
STALE_SECONDS = 2 * 3600
"""A job submitted longer ago than this is sent again: NDIF keeps a result's download link for two hours."""


@dataclass(frozen=True)
class Job:
    """One batch's request: what it computes (`kind`), on which inputs, and about how much comes back."""

    kind: str
    """"lens", "continuation", "grid" or "patching" (`lens.remote.RemoteModel` opens each)."""
    inputs: dict[str, torch.Tensor]
    """The batch: left-padded `input_ids` and `attention_mask` (patching: clean and corrupted ones)."""
    args: dict[str, Any] = field(default_factory=dict)
    """What else the job takes: plain values and small tensors (followed ids, top-k, temperatures)."""
    prompts: int = 0
    bytes_back: int = 0
    """The size of its result, from the shapes it will have (the estimate)."""

    def key(self, model: str, code: str) -> str:
        """Its name in the cache: the model's identity, the kind, the inputs and arguments, the code version."""
        digest = hashlib.sha256(f"{model}\n{self.kind}\n{code}".encode())
        for name, value in sorted({**self.inputs, **{f"arg:{k}": v for k, v in self.args.items()}}.items()):
            digest.update(name.encode())
            _hash_into(digest, value)
        return f"{self.kind}-{digest.hexdigest()[:24]}"


class Runner(Protocol):
    """Where jobs run: a remote model (`lens.remote.RemoteModel`)."""

    name: str
    identity: str
    """The model its jobs run on (results are kept per identity)."""
    code_version: str
    """A digest of the code that builds and runs its jobs: a change makes every kept result stale."""

    def submit(self, job: Job) -> str | Any:
        """Send a job; its id, or (a simulated run, which runs at once) its result wrapped as `Done`."""

    def poll(self, job_id: str) -> Any | None:
        """A submitted job's result, or None while it is queued or running."""

    def request_bytes(self, job: Job) -> int:
        """The size of the request a job sends (serialized here, sending nothing)."""


@dataclass(frozen=True)
class Done:
    """A job's result where it ran at once (nnsight's local simulation of a remote request)."""

    result: Any


def run(runner: Runner, jobs: Sequence[Job], what: str, out=None) -> list[Any]:
    """Every job's result, in order: from the lens cache where an earlier run finished it, else from NDIF."""
    out = out or sys.stderr
    folder = jobs_dir(runner.identity)
    keys = [job.key(runner.identity, runner.code_version) for job in jobs]
    results: dict[int, Any] = {i: _load(folder / f"{key}.pt") for i, key in enumerate(keys)
                               if (folder / f"{key}.pt").is_file()}
    todo = [i for i in range(len(jobs)) if i not in results]
    prompts = sum(job.prompts for job in jobs)
    if todo:
        sent = runner.request_bytes(jobs[todo[0]]) * len(todo)
        back = sum(jobs[i].bytes_back for i in todo)
        cached = f" ({len(results)} already here)" if results else ""
        print(f"{runner.name} on NDIF: {what}: {count(prompts, 'prompt')} in {count(len(jobs), 'job')}{cached}; "
              f"about {_size(sent)} to send and {_size(back)} to come back", file=out, flush=True)
    waiting: dict[int, tuple[str, float]] = {}
    for i in todo:  # jobs an interrupted run submitted: polled again, not sent twice
        noted = _pending(folder / f"{keys[i]}.job")
        if noted is not None:
            waiting[i] = noted
    queue = [i for i in todo if i not in waiting]
    finished = len(results)
    while queue or waiting:
        while queue and len(waiting) < IN_FLIGHT:
            i = queue.pop(0)
            sent = runner.submit(jobs[i])
            if isinstance(sent, Done):
                results[i] = _keep(folder / f"{keys[i]}.pt", sent.result)
                finished += 1
                _progress(runner, what, finished, len(jobs), jobs[i], 0.0, folder / f"{keys[i]}.pt", out)
                continue
            waiting[i] = (sent, time.time())
            _write(folder / f"{keys[i]}.job", f"{sent} {time.time():.0f}".encode())
        if not waiting:
            continue
        time.sleep(POLL_SECONDS)
        for i, (job_id, since) in list(waiting.items()):
            try:
                result = runner.poll(job_id)
            except Exception:
                (folder / f"{keys[i]}.job").unlink(missing_ok=True)  # failed there: a rerun sends it again
                raise
            if result is None:
                continue
            results[i] = _keep(folder / f"{keys[i]}.pt", result)
            (folder / f"{keys[i]}.job").unlink(missing_ok=True)
            del waiting[i]
            finished += 1
            _progress(runner, what, finished, len(jobs), jobs[i], time.time() - since, folder / f"{keys[i]}.pt", out)
    return [results[i] for i in range(len(jobs))]


def jobs_dir(identity: str) -> Path:
    """Where one model's finished jobs are kept: a folder per model identity, in the lens cache (`LENS_JOBS_DIR`
    overrides the folder they all go in, e.g. for tests)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)[:80]
    root = Path(os.environ["LENS_JOBS_DIR"]) if os.environ.get("LENS_JOBS_DIR") else cache_dir() / "ndif"
    return root / f"{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def saved_bytes(values: int, tensors: int) -> int:
    """About how many bytes a result of `tensors` tensors holding `values` bytes of values takes once saved."""
    return SAVE_BYTES + TENSOR_BYTES * tensors + values


def result_bytes(result: Any) -> int:
    """The size of a result as NDIF stores and sends it (torch.save of the saved values)."""
    import io

    buffer = io.BytesIO()
    torch.save({"out": result}, buffer)
    return buffer.getbuffer().nbytes


def _progress(runner: Runner, what: str, done: int, total: int, job: Job, seconds: float, path: Path, out) -> None:
    """One line per finished job."""
    took = f" after {seconds:.0f} s" if seconds else ""
    print(f"{runner.name} on NDIF: {what}: job {done}/{total} back{took} ({count(job.prompts, 'prompt')}, "
          f"{_size(path.stat().st_size)})", file=out, flush=True)


def _pending(path: Path) -> tuple[str, float] | None:
    """A submitted job noted on disk (its id and when it was sent), unless it is too old to be there still."""
    if not path.is_file():
        return None
    job_id, _, since = path.read_text().partition(" ")
    if not job_id or time.time() - float(since or 0) > STALE_SECONDS:
        path.unlink(missing_ok=True)
        return None
    return job_id, float(since)


def _keep(path: Path, result: Any) -> Any:
    """Write a finished job's result to the cache (atomically), and return it."""
    import io

    buffer = io.BytesIO()
    torch.save(result, buffer)
    _write(path, buffer.getvalue())
    return result


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _write(path: Path, data: bytes) -> None:
    """Write atomically: a run killed mid-write leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)


def _hash_into(digest: Any, value: Any) -> None:
    """Feed a value (tensors by dtype, shape and bytes; containers item by item; the rest by repr) to a digest."""
    if isinstance(value, torch.Tensor):
        digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for k in sorted(value):
            digest.update(repr(k).encode())
            _hash_into(digest, value[k])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _hash_into(digest, item)
    else:
        digest.update(repr(value).encode())


def count(n: int, thing: str) -> str:
    """"1 job", "3 jobs"."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _size(n: float) -> str:
    """Bytes in words: 812 B, 31.5 KB, 4.2 MB, 1.3 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
