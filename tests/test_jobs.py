"""Remote jobs (lens.remote.jobs): one per batch, sent without waiting and polled, an estimate before anything is sent,
a line per finished job, every finished one kept on disk so an interrupted run resumes where it stopped; and the
same jobs through nnsight's own non-blocking client against a stand-in NDIF (`tests.ndif.FakeNDIF`) that answers
as the real one does and runs each request as NDIF runs it: every status, a lost connection, a 5xx, a refused
result link, a job NDIF failed, forgot or keeps queued."""

from __future__ import annotations

import contextlib
import io
import re
import time

import pytest
import torch

from lens.errors import LensError
from lens.remote import jobs
from tests import ndif
from tests.ndif import FakeNDIF


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
            return jobs.Pending("QUEUED")
        self.back.append(job_id)
        return {"first": torch.tensor([int(job_id.removeprefix("job-"))])}

    def request_bytes(self, job: jobs.Job) -> int:
        return 2048


def batches(n: int) -> list[jobs.Job]:
    return [
        jobs.Job("lens", {"input_ids": torch.tensor([[i, 1, 2]])}, {"top_k": 5}, prompts=16, bytes_back=30_000)
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(jobs, "POLL_SECONDS", 0.0)


def test_every_job_comes_back_in_order_with_an_estimate_first_and_a_line_each():
    out = io.StringIO()
    results = jobs.run(Queue(polls=3), batches(6), "the lens over 96 prompts", out=out)
    assert [int(r["first"]) for r in results] == list(range(6))
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "m on NDIF: the lens over 96 prompts: 96 prompts in 6 jobs; about 12.0 KB to send and 175.8 KB to come back"
    )
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
            raise jobs.JobFailed("NDIF could not run m: CUDA out of memory")

    with pytest.raises(jobs.JobFailed, match="out of memory"):
        jobs.run(Failing(), batches(1), "x", out=io.StringIO())
    again = Queue()
    jobs.run(again, batches(1), "x", out=io.StringIO())
    assert again.sent == ["job-0"]


def test_a_job_noted_long_ago_is_asked_for_by_its_id_first():
    # NDIF's result link lives 2 hours from the job's completion, not from its sending: a job queued for hours is
    # still there.
    with pytest.raises(KeyboardInterrupt):
        jobs.run(Queue(fail_at=1, polls=99), batches(2), "x", out=io.StringIO())
    (note,) = jobs_dir_files(Queue(), "*.job")
    age(note, hours=5)
    again = Queue()
    jobs.run(again, batches(2), "x", out=io.StringIO())
    assert again.sent == ["job-1"] and again.asked["job-0"] == 1


def age(note, hours: float) -> None:
    """Make a note look as if its job was sent, and last seen not finished, `hours` ago."""
    noted = jobs._noted(note)
    then = time.time() - hours * 3600
    jobs._note(note, jobs.Note(noted.job_id, then, then))


def test_other_code_or_other_inputs_are_other_jobs():
    job = batches(1)[0]
    assert job.key("test/m@w", "code-1") == batches(1)[0].key("test/m@w", "code-1")
    others = [
        job.key("test/m@w", "code-2"),
        job.key("test/other@w", "code-1"),
        jobs.Job("lens", job.inputs, {"top_k": 6}).key("test/m@w", "code-1"),
        jobs.Job("lens", {"input_ids": torch.tensor([[0, 1, 3]])}, {"top_k": 5}).key("test/m@w", "code-1"),
    ]
    assert len({job.key("test/m@w", "code-1"), *others}) == 5


# ---- nnsight's own non-blocking client against a stand-in NDIF -------------------------------------------------

PROMPT = "The capital of Germany is"


@pytest.fixture
def tiny(tiny_tokenizer, monkeypatch):
    """A random Llama taken as if NDIF ran it (`lens.remote.simulated`), nnsight's client configured as for NDIF (a
    key, compressed requests), and its logit-lens grid of PROMPT run here through the remote path."""
    from nnsight import CONFIG

    from lens.remote import simulated
    from tests.conftest import random_model

    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    monkeypatch.setattr(CONFIG.API, "COMPRESS", True)
    model = random_model("llama", tiny_tokenizer)
    return model, simulated(model).grid(PROMPT)


def on(fake: FakeNDIF, model):
    """`model` sent to the stand-in NDIF, under the model key nnsight sends for a Hub model."""
    from lens.remote import simulated

    far = simulated(model)
    far.via, far.host, far.model_key = True, fake.host, ndif.model_key("test/tiny-llama")
    fake.nn = far.nn
    return far


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_jobs_go_to_ndif_without_waiting_and_are_polled_through_every_status(tiny):
    # The request NDIF receives, run there as NDIF runs it, gives what the same job gives run here (`simulated`).
    from lens.reads.records import Wanted
    from lens.reads.trace import collect, read
    from lens.remote import simulated

    model, _ = tiny
    prompts, answers = ["Rome is the capital of", "The capital of Germany is"], [" Italy", " Berlin"]
    here = simulated(model)
    expected = collect(here, prompts, answers, backend="nnsight")
    with FakeNDIF(statuses=ndif.STATUSES) as fake:
        far = on(fake, model)
        got = collect(far, prompts, answers, backend="nnsight", wanted=Wanted(answers=answers))
    (sent,) = fake.requests  # one job, sent once, over plain HTTP
    assert sent["headers"]["ndif-api-key"] == "dummy" and sent["metadata"]["model_key"] == far.model_key
    assert sent["metadata"]["compress"] is True and sent["headers"]["python-version"]
    assert fake.polls == {"job-1": len(ndif.STATUSES)} and fake.downloads == {"job-1": 1}
    for a, b in zip(read(far, got, answers), read(here, expected, answers), strict=True):
        assert a == b


@pytest.mark.parametrize(
    "fault, link, said",
    [
        ("drop", [200], r"cannot reach NDIF at http://127\.0\.0\.1:\d+ \(.+\): check the network connection"),
        (
            503,
            [200],
            r"NDIF at http://127\.0\.0\.1:\d+ answered 503 Service Unavailable while job job-1 was polled: "
            r"try again later \(https://discuss\.ndif\.us\)",
        ),
        (
            "COMPLETED",
            [403, 200],
            r"the link to the result of job job-1 was refused \(403 Forbidden\): NDIF keeps a "
            r"result 2 hours after its job completes, though it completed less than 2 hours ago: "
            r"run again to ask for it again",
        ),
    ],
    ids=["connection-lost", "5xx", "link-refused"],
)
def test_a_failure_while_polling_leaves_the_note_and_the_rerun_fetches_the_same_job(tiny, fault, link, said):
    model, expected = tiny
    with FakeNDIF(statuses=["QUEUED", fault, "COMPLETED"], link=link) as fake:
        far = on(fake, model)
        with pytest.raises(LensError) as stopped:
            far.grid(PROMPT)
        line = str(stopped.value)
        assert "\n" not in line and "API key" not in line
        assert re.fullmatch(
            said + r" \(1 job sent to NDIF is noted: the next run fetches them by their id, "
            r"without sending them again\)",
            line,
        ), line
        (note,) = jobs_dir_files(far, "*.job")
        assert jobs._noted(note).job_id == "job-1"
        assert same(far.grid(PROMPT), expected)  # the rerun
    assert [r["id"] for r in fake.requests] == ["job-1"]  # fetched by its id, never sent again
    assert fake.polls["job-1"] == 3 and not jobs_dir_files(far, "*.job")


def test_a_job_queued_for_hours_is_fetched_not_sent_again(tiny):
    # NDIF's result link lives 2 hours from completion: a job sent 5 hours ago and still queued is still there.
    model, expected = tiny
    with FakeNDIF(statuses=["QUEUED", "drop", "QUEUED", "COMPLETED"]) as fake:
        far = on(fake, model)
        with pytest.raises(LensError, match="cannot reach NDIF"):
            far.grid(PROMPT)
        age(*jobs_dir_files(far, "*.job"), hours=5)
        assert same(far.grid(PROMPT), expected)
    assert len(fake.requests) == 1 and fake.polls["job-1"] == 4


def test_a_result_whose_link_may_have_expired_is_sent_again_in_the_same_run(tiny):
    model, expected = tiny
    out = io.StringIO()
    with FakeNDIF(statuses={"job-1": ["QUEUED", "drop", "COMPLETED"]}, link=[403, 200]) as fake:
        far = on(fake, model)
        with pytest.raises(LensError, match="cannot reach NDIF"):
            far.grid(PROMPT)
        age(*jobs_dir_files(far, "*.job"), hours=3)  # last seen queued 3 hours ago: it may have completed then
        with contextlib.redirect_stderr(out):
            assert same(far.grid(PROMPT), expected)
    assert [r["id"] for r in fake.requests] == ["job-1", "job-2"] and fake.downloads == {"job-1": 1, "job-2": 1}
    assert (
        "tiny-llama on NDIF: the logit-lens grid: job 1/1 came back without its result, which NDIF keeps 2 "
        "hours after a job completes: sending it again"
    ) in out.getvalue().splitlines()


def test_a_job_ndif_has_no_record_of_ends_in_one_line_and_is_sent_again_by_the_next_run(tiny, monkeypatch):
    # nnsight's poll answers a 404 with None, as it does while a job is not yet recorded: forever, here.
    monkeypatch.setattr(jobs, "UNKNOWN_SECONDS", 0.0)
    model, expected = tiny
    with FakeNDIF(statuses={"job-1": [404]}) as fake:
        far = on(fake, model)
        with pytest.raises(
            LensError,
            match=r"^NDIF has no record of job job-1 \(404 for 0 s\): run again to send "
            r"it again$",
        ):
            far.grid(PROMPT)
        assert not jobs_dir_files(far, "*.job")
        assert same(far.grid(PROMPT), expected)
    assert [r["id"] for r in fake.requests] == ["job-1", "job-2"]


def test_polling_has_a_deadline_after_which_the_job_stays_noted(tiny, monkeypatch):
    model, expected = tiny
    monkeypatch.setattr(jobs, "DEADLINE_SECONDS", 0.0)
    with FakeNDIF(statuses=["QUEUED", "COMPLETED"]) as fake:
        far = on(fake, model)
        with pytest.raises(
            LensError,
            match=r"^job job-1 is not back from NDIF after 0 s: run again later to fetch "
            r"it \(1 job sent to NDIF is noted",
        ):
            far.grid(PROMPT)
        monkeypatch.setattr(jobs, "DEADLINE_SECONDS", 3600.0)
        assert same(far.grid(PROMPT), expected)
    assert len(fake.requests) == 1


def test_a_job_ndif_failed_is_told_by_its_exception_and_sent_again_by_the_next_run(tiny):
    model, expected = tiny
    failed = ndif.error_description(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with FakeNDIF(statuses={"job-1": ["QUEUED", ("ERROR", failed)]}) as fake:
        far = on(fake, model)
        with pytest.raises(jobs.JobFailed) as refused:
            far.grid(PROMPT)
        assert str(refused.value) == (
            "NDIF could not run tiny-llama: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
        )
        assert not jobs_dir_files(far, "*.job")
        assert same(far.grid(PROMPT), expected)
    assert [r["id"] for r in fake.requests] == ["job-1", "job-2"]


def jobs_dir_files(model, pattern: str = "*.pt") -> list:
    return sorted(jobs.jobs_dir(model.identity).glob(pattern))
