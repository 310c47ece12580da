"""Remote use: a Hugging Face Hub model run on NDIF (the National Deep Inference Fabric) through nnsight.

The weights never come here. nnsight builds the model on the meta device from its config (and loads its
tokenizer) from the Hub, and ships the trace of `lens.backends.nnsight_reads` to NDIF, which runs it on the
model it hosts. The exact lens (the model's own final norm, unembedding and soft-cap, `lens.lenses.exact_logits`)
is applied there, at the last position only, so what comes back is per-layer logits at one position per prompt
(Llama 3.1 70B: 80 x 128,256 bfloat16 values, 21 MB a prompt), never activations. The statistics (`lens.trace`)
are computed here, by the same code as for a model run here.

The API key comes from the environment (`NDIF_API_KEY`) or from nnsight's configuration file, written once by
`nnsight login` (nnsight's `CONFIG.set_default_api_key`). No key, no network, a model NDIF does not run now for
an ordinary key (only a HOT, RUNNING, dedicated deployment of the same model key is; `NDIF_HOTSWAPPING=1` for a
key with hotswapping access): one line each (`LensError`), before anything is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lens.backends import Reads, nnsight_reads
from lens.device import RELATIVE_TOLERANCE
from lens.errors import LensError
from lens.registry import HubModel, ModelSpec, resolve

KEY_URL = "https://login.ndif.us"
"""Where an NDIF API key comes from."""
SCHEDULE_URL = "https://nnsight.net/status/"
"""Where NDIF's refusals point for the models it runs and when (its scheduled models)."""
NOT_DEDICATED = "Model is not dedicated and hotswapping is not supported for this API key"
"""NDIF's words for a request an ordinary key makes of a model that is not dedicated."""
TOO_OLD = re.compile(r"Client nnsight version (\S+) is incompatible with the server nnsight version\. "
                     r"The minimum supported version is (\S+)\. ")
"""NDIF's refusal of a client older than its own nnsight (its `validate_nnsight_version`)."""


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
    (serialized, then run back against a model that is here: tests)."""
    remote = True
    device = "ndif"

    @property
    def name(self) -> str:
        return self.spec.name

    def reads(self, batch: dict[str, torch.Tensor]) -> Reads:
        """Run one batch on NDIF: the exact lens at every block and the output logits, at the last position."""
        with contextlib.redirect_stdout(sys.stderr):  # nnsight's job status display; stdout stays the result
            try:
                reads = nnsight_reads(self.nn, batch, lens=True, softcap=self.softcap, remote=self.via)
            except LensError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure of the remote call becomes one line
                raise self._explain(error) from error
        self._require_exact(reads)
        return reads

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
        if "not dedicated" in lowered or "hotswap" in lowered:  # NDIF's words for a model it does not run now
            return LensError(f"NDIF does not run {self.repo} for this API key now ({text}): see {SCHEDULE_URL} "
                             "for when it is scheduled")
        if any(word in lowered for word in ("api key", "api-key", "unauthorized", "forbidden", " 401", " 403")):
            return LensError(f"NDIF refused the API key ({text}): check NDIF_API_KEY (get one at {KEY_URL})")
        if isinstance(error, websocket.WebSocketBadStatusException):
            return LensError(f"NDIF at {self.host} refused the connection ({text}): try again later")
        if not isinstance(error, RemoteError) and _is_network_error(error):
            return LensError(f"cannot reach NDIF at {self.host} ({text}): check the network connection")
        return LensError(f"NDIF could not run {self.repo}: {text}")

    def _require_exact(self, reads: Reads) -> None:
        """The check every local load makes: the lens at the last block is the model's output (as NDIF ran it)."""
        lens, output = reads.lens_logits[:, -1].float(), reads.output_logits.float()
        relative = float((lens - output).abs().max() / output.abs().max().clamp_min(1e-12))
        tolerance = RELATIVE_TOLERANCE.get(reads.output_logits.dtype, RELATIVE_TOLERANCE[torch.bfloat16])
        if not relative <= tolerance:
            raise LensError(f"the lens is not exact on {self.repo} as NDIF runs it: its last block differs from the "
                            f"output by {relative:.1e} of the logits' scale (tolerance {tolerance:.0e})")


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
        raise LensError(f"--remote needs an NDIF API key: set NDIF_API_KEY=... (get one at {KEY_URL}), "
                        f"or store it once with `{_nnsight_command()} login`")
    host = (os.environ.get("NDIF_HOST") or CONFIG.API.HOST).rstrip("/")
    CONFIG.API.APIKEY, CONFIG.API.HOST = key, host  # what nnsight's remote backend sends, this process only
    deployments = ndif_deployments(host)
    nn = _meta_model(spec.repo)
    if os.environ.get("NDIF_HOTSWAPPING", "0") == "0":  # a hotswapping key: NDIF deploys what it is asked for
        _require_hosted(_model_key(nn, spec.repo), deployments, spec.repo)
    config = nn._module.config
    cap = getattr(config, "final_logit_softcapping", None)
    return RemoteModel(
        spec=spec, repo=spec.repo, nn=nn, tokenizer=nn.tokenizer, n_layers=int(config.num_hidden_layers),
        n_ctx=int(getattr(config, "max_position_embeddings", None) or nn.tokenizer.model_max_length),
        softcap=float(cap) if cap else None, host=host,
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
        raise LensError(f"NDIF does not host {repo}{alias}: --remote runs only the models NDIF runs now (now: {now})")
    if not same and any(d.model_key for d in listed):
        theirs = sorted({_key_summary(d.model_key) for d in listed if d.model_key})
        raise LensError(f"NDIF runs {repo} only as {' and '.join(theirs)}, not as {_key_summary(model_key)} that "
                        "--remote sends: drop --remote to run it here")
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
                        "`hf auth login` (--remote reads its config and tokenizer, never the weights)") from error
    except (OSError, ValueError) as error:
        raise LensError(f"cannot read {repo}'s config and tokenizer from the Hugging Face Hub "
                        f"({_first_line(error)}): --remote needs them (never the weights)") from error


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
        return LensError(f"--remote asks the Hugging Face Hub how it spells {repo} (NDIF knows models by that name), "
                         "but HF_HUB_OFFLINE is set: unset it")
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
