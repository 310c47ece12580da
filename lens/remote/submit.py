"""Submitting a remote job without waiting, and polling it by its id (`lens.remote.jobs` keeps the ids): through
nnsight's remote backend to NDIF, or at once through its simulation here; NDIF's answers as one line each."""

from __future__ import annotations

from typing import Any

from lens.errors import LensError
from lens.remote import jobs
from lens.remote.blocks import SimulatedNDIF, run_job
from lens.remote.errors import KEY_URL, explain


def submit(model: Any, job: jobs.Job) -> str | jobs.Done:
    """Send a job to NDIF without waiting (its id); a simulated one runs here at once (`jobs.Done`)."""
    if model.via == "local":
        return jobs.Done(run_job(model, job, SimulatedNDIF(model.nn)))
    backend = _backend(model)
    run_job(model, job, backend)
    return backend.job_id


def poll(model: Any, job_id: str) -> Any:
    """A submitted job's result, or `jobs.Pending` with its status while it is not back (None where NDIF has no
    record of it: nnsight's poll answers a 404 with None); one line where NDIF failed it (`jobs.JobFailed`),
    where the link to its result was refused (`jobs.ResultRefused`), or where NDIF could not be asked."""
    import httpx
    from nnsight.intervention.backends.remote import RemoteError

    backend = _backend(model, job_id)
    try:
        result = backend.poll()
    except RemoteError as error:  # its ERROR status: NDIF ran the job and failed it
        raise jobs.JobFailed(str(explain(error, model.repo, model.host))) from error
    except httpx.HTTPStatusError as error:
        raise _polling_error(model, job_id, error) from error
    except Exception as error:  # noqa: BLE001 - every failure of the remote call becomes one line
        raise explain(error, model.repo, model.host) from error
    status = None if backend.status is None else str(getattr(backend.status, "value", backend.status))
    if result is None and status == "COMPLETED":
        raise jobs.JobFailed(
            f"NDIF completed job {job_id} on {model.repo} without a result: run again to send it again"
        )
    if result is None:
        return jobs.Pending(status)
    return result["out"]


def _polling_error(model: Any, job_id: str, error: Any) -> LensError:
    """One line for an HTTP error while a job is polled: at NDIF's /response (a refused key, or 5xx: the job is
    still there), or at the link to its result (kept two hours after the job completes: not the API key)."""
    code, reason = error.response.status_code, error.response.reason_phrase
    if not str(error.request.url).startswith(f"{model.host}/response/"):
        return jobs.ResultRefused(
            f"the link to the result of job {job_id} was refused ({code} {reason}): NDIF "
            "keeps a result 2 hours after its job completes"
        )
    if code in (401, 403):
        return LensError(
            f"NDIF refused the API key while job {job_id} was polled ({code} {reason}): check "
            f"NDIF_API_KEY (get one at {KEY_URL})"
        )
    return LensError(
        f"NDIF at {model.host} answered {code} {reason} while job {job_id} was polled: try again "
        "later (https://discuss.ndif.us)"
    )


def _backend(model: Any, job_id: str | None = None) -> Any:
    """nnsight's remote backend for a job sent without waiting (or polled, by its id), its display off."""
    from nnsight.intervention.backends.display import StatusDisplay
    from nnsight.intervention.backends.remote import RemoteBackend

    try:
        key = model.model_key or model.nn.to_model_key()  # nnsight asks the Hub for the repo's spelling
    except Exception as error:  # noqa: BLE001 - whatever the Hub's client raises
        raise explain(error, model.repo, model.host) from error
    backend = RemoteBackend(key, host=model.host, blocking=False, job_id=job_id)
    backend.display = StatusDisplay(enabled=False)  # a line per job instead (`lens.remote.jobs`)
    return backend
