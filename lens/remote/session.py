"""A session with NDIF: connecting (the API key, NDIF's deployments, the model it must run now, built here on the
meta device from its config); its jobs are sent and polled by `lens.remote.submit`.

The API key comes from the environment (`NDIF_API_KEY`) or from nnsight's configuration file, written once by
`nnsight login` (nnsight's `CONFIG.set_default_api_key`). No key, no network, a model NDIF does not run now for
an ordinary key (only a HOT, RUNNING, dedicated deployment of the same model key is; `NDIF_HOTSWAPPING=1` for a
key with hotswapping access): one line each (`LensError`), before anything is sent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from lens.errors import LensError
from lens.models.registry import HubModel, resolve
from lens.remote.errors import (
    KEY_URL,
    NOT_DEDICATED,
    SCHEDULE_URL,
    first_line,
    hub_error,
    nnsight_command,
)
from lens.remote.model import RemoteModel


def connect(name_or_path: str) -> RemoteModel:
    """A Hub model to run on NDIF: checks the API key, that NDIF is reachable and hosts the model, then builds
    the model from its config on the meta device (its weights are never downloaded)."""
    spec = resolve(name_or_path)
    if not isinstance(spec, HubModel):
        raise LensError(
            f"--remote runs Hugging Face Hub models on NDIF by repo id (org/name); {name_or_path} is "
            f"{spec.where()}: drop --remote to run it here"
        )
    from nnsight import CONFIG

    key = os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY
    if not key:
        raise LensError(
            f"a run on NDIF needs an API key: set NDIF_API_KEY=... (get one at {KEY_URL}), "
            f"or store it once with `{nnsight_command()} login`"
        )
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
        spec=spec,
        repo=spec.repo,
        nn=nn,
        tokenizer=nn.tokenizer,
        n_layers=int(config.num_hidden_layers),
        n_ctx=int(getattr(config, "max_position_embeddings", None) or nn.tokenizer.model_max_length),
        softcap=float(cap) if cap else None,
        host=host,
        model_key=model_key,
        weights_id=model_key,
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
        raise LensError(f"cannot reach NDIF at {host} ({first_line(error)}): check the network connection") from error
    except httpx.HTTPStatusError as error:
        raise LensError(
            f"NDIF at {host} answered {error.response.status_code}: try again later (https://discuss.ndif.us)"
        ) from error
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None
    if not isinstance(deployments, dict):
        return None
    return [
        Deployment(
            repo_id=str(entry.get("repo_id", name)),
            level=str(entry.get("deployment_level", "")).upper(),
            state=entry.get("application_state"),
            dedicated=bool(entry.get("dedicated")),
            model_key=entry.get("model_key")
            or (name.removeprefix("ModelActor:") if name.startswith("ModelActor:") else None),
        )
        for name, entry in deployments.items()
        if isinstance(entry, dict)
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
        raise LensError(
            f"NDIF runs {repo} only as {' and '.join(theirs)}, not as {_key_summary(model_key)} that "
            "nnsight sends: run it here instead"
        )
    best = min(same or listed, key=lambda d: (d.level != "HOT", d.state != "RUNNING"))
    if best.level == "HOT" and best.state == "RUNNING":
        raise LensError(
            f"NDIF runs {repo} now but not as a dedicated model, which it refuses to an ordinary API key "
            f'("{NOT_DEDICATED}"): see {SCHEDULE_URL} for when it is scheduled, or set '
            "NDIF_HOTSWAPPING=1 if your key has hotswapping access"
        )
    wait = {"DEPLOYING": "try again in a few minutes", "UNHEALTHY": "try again later (https://discuss.ndif.us)"}
    raise LensError(
        f"NDIF lists {repo} but it is not running now ({best.where()}): "
        + wait.get(best.state or "", f"see {SCHEDULE_URL} for when it is scheduled (running now: {now})")
    )


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
    return f"{path.rsplit('.', 1)[-1]} for {fields.get('task') or 'no task'}" + (
        "" if revision == "main" else f" at revision {revision}"
    )


def _model_key(nn: Any, repo: str) -> str:
    """nnsight's name of the model to NDIF: its repo id as the Hub spells it, asked of the Hub once."""
    try:
        return nn.to_model_key()
    except Exception as error:  # noqa: BLE001 - whatever the Hub's client raises
        raise hub_error(repo, error) from error


def _meta_model(repo: str) -> Any:
    """nnsight's model for a Hub repo, on the meta device: its config and tokenizer only, no weights."""
    from huggingface_hub.errors import GatedRepoError
    from nnsight import TransformersModel

    try:
        return TransformersModel(repo, task="text-generation")  # not dispatched: nothing but config + tokenizer
    except GatedRepoError as error:
        raise LensError(
            f"{repo} is gated: accept its licence on https://huggingface.co/{repo} and log in with "
            "`hf auth login` (a run on NDIF reads its config and tokenizer, never the weights)"
        ) from error
    except (OSError, ValueError) as error:
        raise LensError(
            f"cannot read {repo}'s config and tokenizer from the Hugging Face Hub "
            f"({first_line(error)}): a run on NDIF needs them (never the weights)"
        ) from error
