"""Stand-ins for NDIF, in the formats its server writes them (github.com/ndif-team/ndif, commit 028db44 and the
API service after it): the /status payload of `ControllerActor.status` (src/services/ray/src/ray/deployments/
controller/controller.py), the error texts of the API service (src/services/api/src/app.py, dependencies.py),
`FakeNDIF`, its HTTP API as nnsight 0.8.1's non-blocking client talks to it, and `execute`, a request run as NDIF
runs one. Run as a script it is a server process where no `lens` is (`serve_here`): see its docstring."""

from __future__ import annotations

import email.parser
import email.policy
import importlib.abc
import io
import json
import linecache
import sys
import threading
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KEY_CLASS = "nnsight.modeling.transformers.TransformersModel"
"""The class path nnsight 0.8 puts in the key of a Hub model (LanguageModel is keyed as TransformersModel)."""


def model_key(repo: str, task: str = "text-generation") -> str:
    """nnsight's key of a Hub model built from its repo id (`Remotable.to_model_key`): the class path, then the
    canonical repo id, the revision (null unless given) and the task as JSON."""
    return f"{KEY_CLASS}:" + json.dumps({"repo_id": repo, "revision": None, "task": task})


Entry = tuple[str, dict]


def hot(repo: str, state: str = "RUNNING", dedicated: bool = True, task: str = "text-generation") -> Entry:
    """A deployment on GPUs: named after its Ray actor, with the actor's state as `application_state`."""
    key = model_key(repo, task)
    entry = {
        "application_state": state,
        "deployment_level": "HOT",
        "dedicated": dedicated,
        "model_key": key,
        "repo_id": repo,
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "config": "{}",
        "n_params": 1_000_000,
    }
    if not dedicated:  # a scheduled deployment: the controller gives its end
        entry["schedule"] = {"end_time": "2026-02-13T18:00:00+00:00"}
    return f"ModelActor:{key}", entry


def warm(repo: str) -> Entry:
    """A deployment cached in CPU memory: no actor state, no `dedicated`."""
    key = model_key(repo)
    return f"ModelActor:{key}", {
        "deployment_level": "WARM",
        "model_key": key,
        "repo_id": repo,
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "config": "{}",
        "n_params": 1_000_000,
    }


def cold(repo: str) -> Entry:
    """A model downloaded on the cluster, not deployed: named by its repo id."""
    return repo, {"deployment_level": "COLD", "repo_id": repo}


def status(*entries: Entry) -> dict:
    """The whole /status answer: the deployments, then the cluster's nodes."""
    return {
        "deployments": dict(entries),
        "cluster": {
            "nodes": {
                "node-0": {
                    "resources": {"total_gpus": 8, "gpu_memory_bytes": 85_899_345_920, "available_gpus": 2},
                    "deployments": {},
                }
            }
        },
    }


def error_description(error: Exception) -> str:
    """An ERROR response's description as NDIF writes it for an exception (`ModelActor.exception`): the
    traceback, then the exception's text."""
    try:
        raise error
    except Exception as raised:  # noqa: BLE001 - formatted as the server formats it
        return f"{traceback.format_exc()}\n{str(raised)}"


def too_old(client: str, minimum: str) -> str:
    """NDIF's refusal of an nnsight older than its own (`validate_nnsight_version`), as nnsight raises it."""
    detail = (
        f"Client nnsight version {client} is incompatible with the server nnsight version. The minimum "
        f"supported version is {minimum}. Please update nnsight to the latest version: "
        "`pip install --upgrade nnsight`"
    )
    return f"Failed to send request: {detail}"  # nnsight's RemoteBackend._post, from the 400's "detail"


def python_refused(client: str, minimum: str) -> str:
    """NDIF's refusal of a client Python older than its minimum (`validate_python_version`: the minimum defaults to
    the server's own Python), the `detail` of its 400."""
    return (
        f"Client python version {client} is incompatible with the server. The minimum supported version is "
        f"{minimum}. Please update your python version and try again."
    )


def python_mismatch(client: str, server: str) -> str:
    """An older NDIF's refusal of a client Python other than its own (commit 028db44's `validate_python_version`)."""
    return (
        f"Client python version {client} does not match server version: {server}. Please update your python "
        "version and try again."
    )


KEY_REFUSED = "Missing or invalid API key. Please visit https://login.ndif.us/ to create a new one."
"""NDIF's 401 for a key it does not know (`authenticate_api_key`)."""
EXPIRED_LINK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Request has '
    b"expired</Message><X-Amz-Expires>7200</X-Amz-Expires></Error>"
)
"""What the object store answers (403) on a result link past its expiry (NDIF presigns it for 2 hours)."""
RECEIVED = "Your job has been received and is waiting to be queued."
"""NDIF's description of a RECEIVED job (its /request endpoint)."""
STATUSES = ("RECEIVED", "QUEUED", "PROVISIONING", "DEPLOYING", "DISPATCHED", "RUNNING", "LOG", "COMPLETED")
"""Every status nnsight 0.8.1 knows but ERROR, in the order a job goes through them (LOG: a message while it runs;
NDIF keeps only the others for a job polled without waiting, so a poll seeing one is an extra check)."""


def unpack(blob: bytes, compress: bool, nn: Any, unpickler: type | None = None) -> Any:
    """A request unpacked as NDIF unpacks one (nnsight 0.8.1's format), against the hosted model's persistent
    objects (its envoys' modules, its interleaver): the tracer, its block's code and what the block reads. The
    unpacking registers the block's source under the client's file name: put back after."""
    from nnsight.intervention.serialization import CustomCloudUnpickler
    from nnsight.schema.request import RequestModel

    before = dict(linecache.cache)
    try:
        return RequestModel.deserialize(
            blob, nn._remoteable_persistent_objects(), compress=compress, unpickler=unpickler or CustomCloudUnpickler
        )
    finally:
        linecache.cache.clear()
        linecache.cache.update(before)


def execute(blob: bytes, compress: bool, nn: Any, unpickler: type | None = None) -> dict[str, Any]:
    """A request run as NDIF runs one: unpacked (`unpack`), its block executed with the unpacked code, the values
    it saved returned by name."""
    from nnsight.tracing.tracer import _saves, dec, inc

    tracer = unpack(blob, compress, nn, unpickler)
    inc()
    try:
        tracer.execute(tracer.info.code)
        return {name: value for name, value in tracer.info.frame.f_locals.items() if id(value) in _saves()}
    finally:
        dec()


def watched(check: Any) -> type:
    """nnsight's unpickler, calling `check(module)` for every module a request names as it is unpacked: the module
    of each class or function it rebuilds, and each module object (cloudpickle's `subimport`)."""
    from nnsight.intervention.serialization import CustomCloudUnpickler

    class Watched(CustomCloudUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            check(module)
            found = super().find_class(module, name)
            if module.startswith("cloudpickle") and name in ("subimport", "dynamic_subimport"):
                return lambda wanted, *rest: check(wanted) or found(wanted, *rest)
            return found

    return Watched


def named(blob: bytes, compress: bool, nn: Any) -> set[str]:
    """The modules a request names as it is unpacked (`watched`)."""
    seen: set[str] = set()
    unpack(blob, compress, nn, watched(seen.add))
    return seen


def guarded(allowed: Iterable[str]) -> type:
    """nnsight's unpickler, refusing what NDIF's sandbox refuses while it unpacks a request: a module not allowed,
    named by a class, a function or a module object; `allowed` names modules exactly, or with a trailing "." every
    module under one ("torch.")."""
    names = tuple(allowed)

    def check(module: str) -> None:
        if not any(module == name or name.endswith(".") and module.startswith(name) for name in names):
            raise ImportError(f"Module {module} is not whitelisted")

    return watched(check)


class FakeNDIF:
    """NDIF's HTTP API as nnsight 0.8.1 talks to it without waiting (its RemoteBackend with `blocking=False`).

    POST /request (multipart: `data`, the RequestModel's JSON, and `blob`, the request, zstd-compressed where the
    JSON says so; headers ndif-api-key, nnsight-version, python-version) is checked as NDIF checks it (a key it
    does not know: 401; an nnsight or a Python older than its minimum: 400 with NDIF's words) and answered RECEIVED
    with the job's id; the job runs at once on the model hosted here (`execute`). GET /response/<id> answers each
    poll of a job with the next of `statuses` (a status name; ("ERROR", description); an int: that HTTP status
    with NDIF's JSON body; "drop": the connection closed unanswered), the last repeated; `statuses` may be a dict
    of such lists by job id ("job-1", ...). COMPLETED carries a link to the result (torch.save of {"id", **saved
    values}, zstd-compressed as the request asked); the links, whichever job's, answer with the next of `link`
    in turn (200, or a status: 403 is the store's answer to an expired link).
    """

    def __init__(
        self,
        nn: Any = None,
        statuses: Iterable[Any] | dict = STATUSES,
        link: Iterable[int] = (200,),
        key: str = "dummy",
        min_python: str | None = None,
        min_nnsight: str | None = None,
    ) -> None:
        self.nn, self.link, self.key = nn, list(link), key
        self.statuses = statuses if isinstance(statuses, dict) else {None: list(statuses)}
        """Per job id, the answers to its polls (None: every other job's; by default every status in turn)."""
        self.min_python, self.min_nnsight = min_python, min_nnsight
        self.requests: list[dict] = []
        """Each request sent: its id, its JSON, its headers and its size."""
        self.polls: dict[str, int] = {}
        self.downloads: dict[str, int] = {}
        self.results: dict[str, bytes] = {}
        self.failed: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeNDIF:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def receive(self, body: bytes, kind: str, headers: Any) -> tuple[int, dict]:
        """A POST /request: refused as NDIF refuses it, or run and answered RECEIVED."""
        if headers.get("ndif-api-key") != self.key:
            return 401, {"detail": KEY_REFUSED}
        from packaging.version import Version

        nnsight_version = headers.get("nnsight-version", "")
        if self.min_nnsight and Version(nnsight_version) < Version(self.min_nnsight):
            return 400, {"detail": too_old(nnsight_version, self.min_nnsight).removeprefix("Failed to send request: ")}
        python = ".".join(headers.get("python-version", "").split(".")[:2])
        if self.min_python and Version(python) < Version(self.min_python):
            return 400, {"detail": python_refused(python, self.min_python)}
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + body
        )
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in form.iter_parts()
        }
        metadata = json.loads(fields["data"])
        job_id = f"job-{len(self.requests) + 1}"
        self.requests.append({"id": job_id, "metadata": metadata, "headers": dict(headers), "size": len(body)})
        import torch

        try:
            saved = execute(fields["blob"], metadata["compress"], self.nn)
        except Exception as error:  # noqa: BLE001 - answered as NDIF answers a failed job
            self.failed[job_id], saved = error_description(error), {}
        buffer = io.BytesIO()
        torch.save({"id": job_id, **saved}, buffer)
        data = buffer.getvalue()
        if metadata["compress"]:
            import zstandard

            data = zstandard.ZstdCompressor().compress(data)
        self.results[job_id] = data
        return 200, {"id": job_id, "status": "RECEIVED", "description": RECEIVED}

    def answer(self, job_id: str, host: str) -> Any:
        """What a poll of a job gets: the next of its statuses."""
        if job_id not in self.results:
            return 404
        n = self.polls[job_id] = self.polls.get(job_id, 0) + 1
        script = self.statuses.get(job_id, self.statuses.get(None, STATUSES))
        item = script[min(n, len(script)) - 1]
        if job_id in self.failed:  # the request failed where it ran: ERROR, with the server's traceback
            return {"id": job_id, "status": "ERROR", "description": self.failed[job_id]}
        if item == "drop" or isinstance(item, int):
            return item
        if isinstance(item, tuple):
            return {"id": job_id, "status": item[0], "description": item[1]}
        if item == "COMPLETED":
            return {
                "id": job_id,
                "status": "COMPLETED",
                "description": "Your job has been completed.",
                "data": f"http://{host}/result/{job_id}?X-Amz-Expires=7200",
            }
        return {"id": job_id, "status": item, "description": item.lower()}

    def _handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self._json(*fake.receive(body, self.headers["Content-Type"], self.headers))

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/result/"):
                    job_id = self.path.removeprefix("/result/").split("?")[0]
                    fake.downloads[job_id] = fake.downloads.get(job_id, 0) + 1
                    n = sum(fake.downloads.values())
                    code = fake.link[min(n, len(fake.link)) - 1]
                    if code == 200:
                        self._send(200, fake.results[job_id], "application/octet-stream")
                    else:
                        self._send(code, EXPIRED_LINK, "application/xml")
                    return
                answer = fake.answer(self.path.removeprefix("/response/"), self.headers["Host"])
                if answer == "drop":
                    self.close_connection = True  # no answer at all: the client sees the connection go
                elif isinstance(answer, int):
                    self._json(answer, {"detail": "Not Found" if answer == 404 else "Service Unavailable"})
                else:
                    self._json(200, answer)

            def _json(self, status: int, payload: dict) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


# ---- a server process where no `lens` is --------------------------------------------------------------------


class NoLens(importlib.abc.MetaPathFinder):
    """Refuses `lens` (an editable install would otherwise find it): NDIF has no such package."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name.split(".")[0] == "lens":
            raise ModuleNotFoundError(f"No module named {name!r} (not on the NDIF server)")
        return None


def serve_here(model_dir: str, requests_dir: str, allowed: str) -> None:
    """Run every request (`*.request`: compress flag byte, then the request) in `requests_dir` on the model saved in
    `model_dir` (float32, eager attention), as NDIF would where no `lens` is and only the `allowed` modules (a JSON
    list, as `guarded` reads it) may be named by a request; write each one's saved values beside it (`*.result`)."""
    sys.meta_path.insert(0, NoLens())
    import torch
    import transformers
    from nnsight import TransformersModel

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    nn = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    unpickler = guarded(json.loads(allowed))
    for path in sorted(Path(requests_dir).glob("*.request")):
        data = path.read_bytes()
        saved = execute(data[1:], bool(data[0]), nn, unpickler)
        torch.save(saved, path.with_suffix(".result"))
    assert not [name for name in sys.modules if name.split(".")[0] == "lens"]
    print(f"ran {len(list(Path(requests_dir).glob('*.request')))} requests")


if __name__ == "__main__":
    serve_here(*sys.argv[1:4])
