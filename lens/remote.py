"""Remote use: a Hugging Face Hub model run on NDIF (the National Deep Inference Fabric) through nnsight.

The weights never come here. nnsight builds the model on the meta device from its config (and loads its
tokenizer) from the Hub, and ships the trace of `lens.backends.nnsight_reads` to NDIF, which runs it on the
model it hosts. The exact lens (the model's own final norm, unembedding and soft-cap, `lens.lenses.exact_logits`)
is applied there, at the last position only, so what comes back is per-layer logits at one position per prompt
(Llama 3.1 70B: 80 x 128,256 bfloat16 values, 21 MB a prompt), never activations. The statistics (`lens.trace`)
are computed here, by the same code as for a model run here.

The API key comes from the environment (`NDIF_API_KEY`) or from nnsight's configuration file, written once by
`nnsight login` (nnsight's `CONFIG.set_default_api_key`). No key, no network, a model NDIF does not host: one
line each (`LensError`), before anything is sent.
"""

from __future__ import annotations

import contextlib
import os
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
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
        from nnsight.intervention.backends.remote import RemoteError

        text, lowered = _first_line(error), _first_line(error).lower()
        if isinstance(error, (HfHubHTTPError, OfflineModeIsEnabled)):  # nnsight names the model by its Hub id
            return LensError(f"cannot reach the Hugging Face Hub to name {self.repo} to NDIF ({text})")
        if "not dedicated" in lowered or "hotswap" in lowered:  # NDIF's words for a model it does not run now
            return LensError(f"NDIF does not run {self.repo} for this API key now ({text})")
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
    _require_hosted(spec.repo, host)
    nn = _meta_model(spec.repo)
    config = nn._module.config
    cap = getattr(config, "final_logit_softcapping", None)
    return RemoteModel(
        spec=spec, repo=spec.repo, nn=nn, tokenizer=nn.tokenizer, n_layers=int(config.num_hidden_layers),
        n_ctx=int(getattr(config, "max_position_embeddings", None) or nn.tokenizer.model_max_length),
        softcap=float(cap) if cap else None, host=host,
    )


def hosted_models(host: str) -> list[str] | None:
    """The repo ids NDIF lists at `host` (its /status), or None where the answer names none."""
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
    except ValueError:  # not JSON
        return None
    if not isinstance(deployments, dict):
        return None
    return sorted({str(d.get("repo_id", name)) for name, d in deployments.items() if isinstance(d, dict)})


def _require_hosted(repo: str, host: str) -> None:
    hosted = hosted_models(host)
    if hosted is not None and repo.lower() not in {r.lower() for r in hosted}:
        listed = ", ".join(hosted[:6]) + (", ..." if len(hosted) > 6 else "") if hosted else "none"
        raise LensError(f"NDIF does not host {repo}: --remote runs only the models NDIF hosts (now: {listed})")


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


def _is_network_error(error: BaseException) -> bool:
    import httpx
    import websocket

    return isinstance(error, (httpx.TransportError, websocket.WebSocketException, ConnectionError, TimeoutError,
                              OSError))


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
