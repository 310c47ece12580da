"""Remote jobs: one queued NDIF job per batch, sent without waiting and polled, each finished one kept on disk.

`run` says first what a phase will cost (prompts, jobs, bytes sent and to come back), then keeps up to
`IN_FLIGHT` jobs in NDIF's queue, polls them, prints one line per finished job and writes its result to the lens
cache under a key of the model, the job's inputs and the version of the code that builds and runs it (the
runner's `code_version`). A job submitted but not yet back is noted there too (its id, when it was sent and when
it was last seen not finished), so a run stopped for any reason but NDIF failing the job (Ctrl-C, a lost
connection, NDIF answering 5xx, a refused result link, a deadline) leaves the note, and the next run polls the same
job by its id rather than sending it twice. A job is sent again only where NDIF failed it, has no record of it,
or its result may be gone: NDIF keeps a finished job's result link two hours after the job completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from lens.errors import LensError
from lens.paths import cache_dir

IN_FLIGHT = 4
"""Jobs in NDIF's queue at once: enough to keep it busy, few enough to leave room for everyone else's."""
POLL_SECONDS = 3.0
"""How long to wait between two rounds of polling."""
SAVE_BYTES, TENSOR_BYTES = 1300, 330
"""What torch.save adds to a result (NDIF stores it so): about 1.3 KB, and about 330 bytes a tensor."""
RESULT_SECONDS = 2 * 3600
"""How long NDIF's link to a finished job's result lives: two hours after the job completes (a presigned link)."""
DEADLINE_SECONDS = 6 * 3600
"""How long one run waits for one job (queued or running) before it stops; the job stays noted for the next run."""
UNKNOWN_SECONDS = 300
"""How long NDIF may answer that it has no record of a job (404; nnsight's poll then returns None, forever)
before the run stops: NDIF records a job as RECEIVED before it answers the request that sent it."""


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


@dataclass(frozen=True)
class Pending:
    """A job not back yet, with its last status on NDIF (RECEIVED, QUEUED, ..., RUNNING; LOG), or None where NDIF
    answered that it has no record of it (404)."""

    status: str | None


@dataclass(frozen=True)
class Done:
    """A job's result where it ran at once (nnsight's local simulation of a remote request)."""

    result: Any


class JobFailed(LensError):
    """NDIF ran the job and failed it (its ERROR status), or completed it without a result: the note goes, and
    the next run sends the job again."""


class ResultRefused(LensError):
    """The link to a completed job's result was refused (403 or 404 from the store NDIF keeps results in): gone
    where the job may have completed more than `RESULT_SECONDS` ago, else the note stays and a rerun asks again."""


class Runner(Protocol):
    """Where jobs run: a remote model (`lens.remote.RemoteModel`)."""

    name: str
    identity: str
    """The model its jobs run on (results are kept per identity)."""
    code_version: str
    """A digest of the code that builds and runs its jobs: a change makes every kept result stale."""

    def submit(self, job: Job) -> str | Done:
        """Send a job; its id, or (a simulated run, which runs at once) its result wrapped as `Done`."""

    def poll(self, job_id: str) -> Any:
        """A submitted job's result, or `Pending` while it is not back; raises `JobFailed` where NDIF failed it,
        `ResultRefused` where its result's link was refused, `LensError` where NDIF could not be asked."""

    def request_bytes(self, job: Job) -> int:
        """The size of the request a job sends (serialized here, sending nothing)."""


@dataclass
class Note:
    """A job sent and not yet back, as noted on disk."""

    job_id: str
    sent: float
    """When it was sent."""
    pending: float
    """When NDIF last said it was not finished (at first, when it was sent): its result's link lives at least
    `RESULT_SECONDS` from then."""
    waiting: float = field(default_factory=time.time)
    """When this run began waiting for it (not kept: each run has its own deadline)."""
    unknown: float | None = None
    """Since when NDIF has answered that it has no record of it (not kept)."""
    status: str | None = None
    """Its last status on NDIF (not kept)."""

    def may_be_gone(self, now: float) -> bool:
        """Whether its result's link may have expired: it may have completed more than `RESULT_SECONDS` ago."""
        return now - self.pending > RESULT_SECONDS


def run(runner: Runner, jobs: Sequence[Job], what: str, out=None) -> list[Any]:
    """Every job's result, in order: from the lens cache where an earlier run finished it, else from NDIF."""
    out = out or sys.stderr
    folder = jobs_dir(runner.identity)
    keys = [job.key(runner.identity, runner.code_version) for job in jobs]
    results: dict[int, Any] = {
        i: _load(folder / f"{key}.pt") for i, key in enumerate(keys) if (folder / f"{key}.pt").is_file()
    }
    todo = [i for i in range(len(jobs)) if i not in results]
    prompts = sum(job.prompts for job in jobs)
    if todo:
        sent = runner.request_bytes(jobs[todo[0]]) * len(todo)
        back = sum(jobs[i].bytes_back for i in todo)
        cached = f" ({len(results)} already here)" if results else ""
        print(
            f"{runner.name} on NDIF: {what}: {count(prompts, 'prompt')} in {count(len(jobs), 'job')}{cached}; "
            f"about {_size(sent)} to send and {_size(back)} to come back",
            file=out,
            flush=True,
        )
    notes = {i: folder / f"{keys[i]}.job" for i in todo}
    waiting: dict[int, Note] = {}
    for i in todo:  # jobs an interrupted run submitted: polled again by their id, not sent twice
        noted = _noted(notes[i])
        if noted is not None:
            waiting[i] = noted
    queue = [i for i in todo if i not in waiting]
    finished = len(results)

    def again(i: int, why: str) -> None:
        """Send a job again (its result is gone on NDIF): one line saying why."""
        notes[i].unlink(missing_ok=True)
        del waiting[i]
        queue.insert(0, i)
        print(f"{runner.name} on NDIF: {what}: job {i + 1}/{len(jobs)} {why}: sending it again", file=out, flush=True)

    try:
        while queue or waiting:
            while queue and len(waiting) < IN_FLIGHT:
                i = queue.pop(0)
                try:
                    submitted = runner.submit(jobs[i])
                except LensError as error:
                    if waiting:
                        raise LensError(f"{error} ({_kept(waiting)})") from error
                    raise
                if isinstance(submitted, Done):
                    results[i] = _keep(folder / f"{keys[i]}.pt", submitted.result)
                    finished += 1
                    _progress(runner, what, finished, len(jobs), jobs[i], 0.0, folder / f"{keys[i]}.pt", out)
                    continue
                now = time.time()
                waiting[i] = Note(submitted, now, now)
                _note(notes[i], waiting[i])
            if not waiting:
                continue
            time.sleep(POLL_SECONDS)
            for i, note in list(waiting.items()):
                now = time.time()
                try:
                    polled = runner.poll(note.job_id)
                except JobFailed:
                    notes[i].unlink(missing_ok=True)  # failed there: the next run sends it again
                    del waiting[i]
                    raise
                except ResultRefused as refused:
                    if note.may_be_gone(now):
                        again(i, "came back without its result, which NDIF keeps 2 hours after a job completes")
                        continue
                    raise ResultRefused(
                        f"{refused}, though it completed less than 2 hours ago: run again to ask "
                        f"for it again ({_kept(waiting)})"
                    ) from refused
                except LensError as error:  # NDIF not reached, or answering 5xx: the job is still there
                    raise LensError(f"{error} ({_kept(waiting)})") from error
                if isinstance(polled, Pending):
                    if polled.status is not None:
                        note.pending, note.unknown = now, None
                        if polled.status != note.status:  # kept as it changes: a killed run leaves it too
                            note.status = polled.status
                            _note(notes[i], note)
                        continue
                    if note.may_be_gone(now):
                        again(i, "is no longer known to NDIF (404), which keeps a result 2 hours after a job completes")
                        continue
                    note.unknown = note.unknown or now
                    if now - note.unknown > UNKNOWN_SECONDS:
                        notes[i].unlink(missing_ok=True)  # nothing to fetch: the next run sends it again
                        del waiting[i]
                        raise LensError(
                            f"NDIF has no record of job {note.job_id} (404 for "
                            f"{now - note.unknown:.0f} s): run again to send it again"
                        )
                    continue
                results[i] = _keep(folder / f"{keys[i]}.pt", polled)
                notes[i].unlink(missing_ok=True)
                del waiting[i]
                finished += 1
                _progress(runner, what, finished, len(jobs), jobs[i], now - note.sent, folder / f"{keys[i]}.pt", out)
            late = [note for note in waiting.values() if time.time() - note.waiting > DEADLINE_SECONDS]
            if late:
                raise LensError(
                    f"job {late[0].job_id} is not back from NDIF after {_duration(DEADLINE_SECONDS)}: "
                    f"run again later to fetch it ({_kept(waiting)})"
                )
    finally:
        for i, note in waiting.items():  # when each was last seen not finished, for the next run
            _note(notes[i], note)
    return [results[i] for i in range(len(jobs))]


def _kept(waiting: dict[int, Note]) -> str:
    """What a stopped run leaves for the next: its jobs on NDIF, noted to be fetched, not sent again."""
    return (
        f"{count(len(waiting), 'job')} sent to NDIF {'is' if len(waiting) == 1 else 'are'} noted: the next "
        "run fetches them by their id, without sending them again"
    )


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
    print(
        f"{runner.name} on NDIF: {what}: job {done}/{total} back{took} ({count(job.prompts, 'prompt')}, "
        f"{_size(path.stat().st_size)})",
        file=out,
        flush=True,
    )


def _noted(path: Path) -> Note | None:
    """A submitted job noted on disk: its id, when it was sent and when it was last seen not finished (a note of
    an earlier version, "id sent", counts its sending as the last time)."""
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        fields = json.loads(text)
        return Note(str(fields["id"]), float(fields["sent"]), float(fields["pending"]))
    except (ValueError, KeyError, TypeError):
        job_id, _, sent = text.partition(" ")
        try:
            return Note(job_id, float(sent), float(sent)) if job_id else None
        except ValueError:
            return None


def _note(path: Path, note: Note) -> None:
    """Note a submitted job on disk (atomically)."""
    _write(path, json.dumps({"id": note.job_id, "sent": round(note.sent), "pending": round(note.pending)}).encode())


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
    """ "1 job", "3 jobs"."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    """Seconds in words: 40 s, 5 minutes, 6 hours."""
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:.0f} s"


def _size(n: float) -> str:
    """Bytes in words: 812 B, 31.5 KB, 4.2 MB, 1.3 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
