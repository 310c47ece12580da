"""Remote jobs (lens.jobs): one per batch, sent without waiting and polled, an estimate before anything is sent,
a line per finished job, every finished one kept on disk so an interrupted run resumes where it stopped; and the
same jobs through nnsight's own non-blocking client against a stand-in NDIF that answers as the real one does."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from lens import jobs


class Queue:
    """A stand-in for NDIF's queue: each job comes back after `polls` polls, as (kind, first input id)."""

    name, identity, code_version = "m", "test/m@w", "code-1"

    def __init__(self, polls: int = 1, fail_at: int | None = None) -> None:
        self.polls, self.fail_at = polls, fail_at
        self.sent: list[str] = []
        self.asked: dict[str, int] = {}
        self.back: list[str] = []
        self.most_waiting = 0

    def submit(self, job: jobs.Job) -> str:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise KeyboardInterrupt  # the run is stopped here
        job_id = f"job-{int(job.inputs['input_ids'][0, 0])}"
        self.sent.append(job_id)
        self.most_waiting = max(self.most_waiting, len(self.sent) - len(self.back))
        return job_id

    def poll(self, job_id: str):
        self.asked[job_id] = self.asked.get(job_id, 0) + 1
        if self.asked[job_id] < self.polls:
            return None
        self.back.append(job_id)
        return {"first": torch.tensor([int(job_id.removeprefix("job-"))])}

    def request_bytes(self, job: jobs.Job) -> int:
        return 2048


def batches(n: int) -> list[jobs.Job]:
    return [jobs.Job("lens", {"input_ids": torch.tensor([[i, 1, 2]])}, {"top_k": 5}, prompts=16, bytes_back=30_000)
            for i in range(n)]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(jobs, "POLL_SECONDS", 0.0)


def test_every_job_comes_back_in_order_with_an_estimate_first_and_a_line_each():
    out = io.StringIO()
    results = jobs.run(Queue(polls=3), batches(6), "the lens over 96 prompts", out=out)
    assert [int(r["first"]) for r in results] == list(range(6))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("m on NDIF: the lens over 96 prompts: 96 prompts in 6 jobs; about 12.0 KB to send and "
                        "175.8 KB to come back")
    assert len(lines) == 7 and all("m on NDIF: the lens over 96 prompts: job " in line for line in lines[1:])
    assert lines[-1].startswith("m on NDIF: the lens over 96 prompts: job 6/6 back after ")


def test_no_more_jobs_wait_in_ndifs_queue_than_the_limit():
    queue = Queue(polls=2)
    jobs.run(queue, batches(9), "x", out=io.StringIO())
    assert queue.most_waiting == jobs.IN_FLIGHT and len(queue.sent) == 9


def test_finished_jobs_are_kept_and_an_interrupted_run_resumes_where_it_stopped():
    with pytest.raises(KeyboardInterrupt):
        jobs.run(Queue(fail_at=5), batches(8), "x", out=io.StringIO())  # 4 back, the 5th waiting, then stopped
    again, out = Queue(), io.StringIO()
    results = jobs.run(again, batches(8), "x", out=out)
    assert [int(r["first"]) for r in results] == list(range(8))
    assert again.sent == ["job-5", "job-6", "job-7"]  # job 4 was sent before the stop: polled, not sent again
    assert again.asked["job-4"] == 1
    assert "(4 already here)" in out.getvalue().splitlines()[0]
    third = Queue()
    jobs.run(third, batches(8), "x", out=(quiet := io.StringIO()))
    assert third.sent == [] and quiet.getvalue() == ""  # all kept: nothing sent, nothing to say


def test_a_job_that_failed_there_is_sent_again_by_the_next_run():
    class Failing(Queue):
        def poll(self, job_id):
            raise RuntimeError("NDIF could not run m: CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        jobs.run(Failing(), batches(1), "x", out=io.StringIO())
    again = Queue()
    jobs.run(again, batches(1), "x", out=io.StringIO())
    assert again.sent == ["job-0"]


def test_a_job_noted_too_long_ago_is_sent_again(monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        jobs.run(Queue(fail_at=1, polls=99), batches(2), "x", out=io.StringIO())
    monkeypatch.setattr(jobs, "STALE_SECONDS", -1)  # NDIF keeps a result's link two hours
    again = Queue()
    jobs.run(again, batches(2), "x", out=io.StringIO())
    assert again.sent == ["job-0", "job-1"]


def test_other_code_or_other_inputs_are_other_jobs():
    job = batches(1)[0]
    assert job.key("test/m@w", "code-1") == batches(1)[0].key("test/m@w", "code-1")
    others = [job.key("test/m@w", "code-2"), job.key("test/other@w", "code-1"),
              jobs.Job("lens", job.inputs, {"top_k": 6}).key("test/m@w", "code-1"),
              jobs.Job("lens", {"input_ids": torch.tensor([[0, 1, 3]])}, {"top_k": 5}).key("test/m@w", "code-1")]
    assert len({job.key("test/m@w", "code-1"), *others}) == 5


# ---- nnsight's own non-blocking client against a stand-in NDIF -------------------------------------------------


@pytest.fixture
def stand_in_ndif():
    """NDIF's HTTP API as nnsight 0.8 talks to it without waiting: POST /request answers RECEIVED with the job's
    id; GET /response/<id> answers 404 until a status is recorded, then QUEUED, then COMPLETED with a link to the
    result, which is torch.save of the saved values, zstd-compressed as the client asks."""
    import zstandard

    class NDIF(BaseHTTPRequestHandler):
        requests: list[dict] = []
        polls: dict[str, int] = {}
        result: dict = {}

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            NDIF.requests.append({"path": self.path, "key": self.headers.get("ndif-api-key"), "size": len(body),
                                  "metadata": body.split(b'name="data"')[1][:2000]})
            self._json({"id": f"job-{len(NDIF.requests)}", "status": "RECEIVED", "description": "received"})

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/result/"):
                buffer = io.BytesIO()
                torch.save(NDIF.result, buffer)
                self._send(200, zstandard.ZstdCompressor().compress(buffer.getvalue()), "application/octet-stream")
                return
            job_id = self.path.removeprefix("/response/")
            NDIF.polls[job_id] = NDIF.polls.get(job_id, 0) + 1
            if NDIF.polls[job_id] == 1:
                self._send(404, b"{}", "application/json")
            elif NDIF.polls[job_id] == 2:
                self._json({"id": job_id, "status": "QUEUED", "description": "queued"})
            else:
                host = self.headers["Host"]
                self._json({"id": job_id, "status": "COMPLETED", "description": "done",
                            "data": f"http://{host}/result/{job_id}"})

        def _json(self, payload: dict) -> None:
            self._send(200, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NDIF)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield NDIF, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_jobs_go_to_ndif_without_waiting_and_are_polled_until_they_are_back(stand_in_ndif, tiny_tokenizer,
                                                                              monkeypatch):
    from nnsight import CONFIG

    from lens.remote import simulated
    from lens.trace import Wanted, collect, read
    from tests import ndif
    from tests.conftest import random_model

    server, host = stand_in_ndif
    model = random_model("llama", tiny_tokenizer)
    prompts, answers = ["Rome is the capital of", "The capital of Germany is"], [" Italy", " Berlin"]
    here = simulated(model)  # what NDIF computes for this job, run here: the stand-in sends it back
    expected = collect(here, prompts, answers, backend="nnsight")
    (server.result,) = [{"id": "x", "out": jobs._load(path)} for path in jobs_dir_files(here)]
    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    monkeypatch.setattr(CONFIG.API, "COMPRESS", True)
    far = simulated(model)
    far.via, far.host, far.model_key = True, host, ndif.model_key("test/tiny-llama")
    got = collect(far, prompts, answers, backend="nnsight", wanted=Wanted(answers=answers))
    assert [r["path"] for r in server.requests] == ["/request"]  # one job, sent once, over plain HTTP
    assert server.requests[0]["key"] == "dummy" and b"test/tiny-llama" in server.requests[0]["metadata"]
    assert server.polls == {"job-1": 3}  # not yet recorded, queued, completed
    for a, b in zip(read(far, got, answers), read(here, expected, answers), strict=True):
        assert a == b


def jobs_dir_files(model) -> list:
    return sorted(jobs.jobs_dir(model.identity).glob("*.pt"))
