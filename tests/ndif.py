"""Stand-ins for NDIF's answers, in the formats its server writes them (github.com/ndif-team/ndif, commit
028db44): the /status payload of `ControllerActor.status` (src/services/ray/src/ray/deployments/controller/
controller.py) and the error texts of the API service (src/services/api/src/app.py, dependencies.py)."""

from __future__ import annotations

import json
import traceback

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
    entry = {"application_state": state, "deployment_level": "HOT", "dedicated": dedicated, "model_key": key,
             "repo_id": repo, "revision": "0123456789abcdef0123456789abcdef01234567", "config": "{}",
             "n_params": 1_000_000}
    if not dedicated:  # a scheduled deployment: the controller gives its end
        entry["schedule"] = {"end_time": "2026-02-13T18:00:00+00:00"}
    return f"ModelActor:{key}", entry


def warm(repo: str) -> Entry:
    """A deployment cached in CPU memory: no actor state, no `dedicated`."""
    key = model_key(repo)
    return f"ModelActor:{key}", {"deployment_level": "WARM", "model_key": key, "repo_id": repo,
                                 "revision": "0123456789abcdef0123456789abcdef01234567", "config": "{}",
                                 "n_params": 1_000_000}


def cold(repo: str) -> Entry:
    """A model downloaded on the cluster, not deployed: named by its repo id."""
    return repo, {"deployment_level": "COLD", "repo_id": repo}


def status(*entries: Entry) -> dict:
    """The whole /status answer: the deployments, then the cluster's nodes."""
    return {"deployments": dict(entries), "cluster": {"nodes": {"node-0": {
        "resources": {"total_gpus": 8, "gpu_memory_bytes": 85_899_345_920, "available_gpus": 2},
        "deployments": {},
    }}}}


def error_description(error: Exception) -> str:
    """An ERROR response's description as NDIF writes it for an exception (`ModelActor.exception`): the
    traceback, then the exception's text."""
    try:
        raise error
    except Exception as raised:  # noqa: BLE001 - formatted as the server formats it
        return f"{traceback.format_exc()}\n{str(raised)}"


def too_old(client: str, minimum: str) -> str:
    """NDIF's refusal of an nnsight older than its own (`validate_nnsight_version`), as nnsight raises it."""
    detail = (f"Client nnsight version {client} is incompatible with the server nnsight version. The minimum "
              f"supported version is {minimum}. Please update nnsight to the latest version: "
              "`pip install --upgrade nnsight`")
    return f"Failed to send request: {detail}"  # nnsight's RemoteBackend._post, from the 400's "detail"
