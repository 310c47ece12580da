"""NDIF's refusals and failures, and the Hugging Face Hub's while nnsight names a model to NDIF, as one line each
(`LensError`) that says what to do."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lens.errors import LensError

KEY_URL = "https://login.ndif.us"
"""Where an NDIF API key comes from."""

SCHEDULE_URL = "https://nnsight.net/status/"
"""Where NDIF's refusals point for the models it runs and when (its scheduled models)."""

NOT_DEDICATED = "Model is not dedicated and hotswapping is not supported for this API key"
"""NDIF's words for a request an ordinary key makes of a model that is not dedicated."""

TOO_OLD = re.compile(
    r"Client nnsight version (\S+) is incompatible with the server nnsight version\. "
    r"The minimum supported version is (\S+)\. "
)
"""NDIF's refusal of a client older than its own nnsight (its `validate_nnsight_version`)."""

PYTHON_REFUSED = re.compile(
    r"Client python version (\S+) (?:is incompatible with the server\. The minimum supported "
    r"version is|does not match server version:) (\d+(?:\.\d+)*)"
)
"""NDIF's refusal of the client's Python (its `validate_python_version`): older than its minimum, which defaults to
the server's own Python (3.12 in its environment); an older server wanted the same minor version exactly."""


def explain(error: Exception, repo: str, host: str) -> LensError:
    """One line for a failed remote run: unreachable, refused key, model not running, or the server's words."""
    import websocket
    from nnsight.intervention.backends.remote import RemoteError

    text, lowered = first_line(error), first_line(error).lower()
    if _raised_by_the_hub(error):  # nnsight names the model by its Hub id when the trace starts
        return hub_error(repo, error)
    version = TOO_OLD.search(str(error))
    if version:
        client, minimum = version.groups()
        return LensError(
            f"NDIF needs nnsight >= {minimum} (this environment has {client}): try it with "
            f"`./run upgrade-check nnsight=={minimum}`, then keep it with "
            "`./run upgrade-check --take`"
        )
    python = PYTHON_REFUSED.search(str(error))
    if python:
        return _python_refused(*python.groups(), exactly="does not match" in str(error))
    if "not dedicated" in lowered or "hotswap" in lowered:  # NDIF's words for a model it does not run now
        return LensError(
            f"NDIF does not run {repo} for this API key now ({text}): see {SCHEDULE_URL} for when it is scheduled"
        )
    if any(word in lowered for word in ("api key", "api-key", "unauthorized", " 401")):  # NDIF's words (a 401)
        return LensError(f"NDIF refused the API key ({text}): check NDIF_API_KEY (get one at {KEY_URL})")
    if isinstance(error, websocket.WebSocketBadStatusException):
        return LensError(f"NDIF at {host} refused the connection ({text}): try again later")
    cause = error.__cause__ if isinstance(error, RemoteError) else error  # nnsight wraps a failed send
    if cause is not None and _is_network_error(cause):
        return LensError(f"cannot reach NDIF at {host} ({first_line(cause)}): check the network connection")
    return LensError(f"NDIF could not run {repo}: {text}")


def _python_refused(client: str, needed: str, exactly: bool = False) -> LensError:
    """One line for NDIF's refusal of this Python: which Python to make the environment with, and how."""
    wants = f"Python {needed}" + ("" if exactly else " or newer")
    return LensError(
        f"NDIF refuses Python {client}: it needs {wants}; make the project's environment with "
        f"it: `rm -rf .venv && python{needed} -m venv .venv`, then `./run` installs the locked libraries "
        "into it"
    )


def nnsight_command() -> str:
    """How to run nnsight's command line here (it sits beside this Python, e.g. in the project's .venv)."""
    beside = Path(sys.executable).parent / "nnsight"
    if not beside.exists():
        return "nnsight"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def hub_error(repo: str, error: BaseException) -> LensError:
    """One line for a failure of the Hugging Face Hub while nnsight names the model to NDIF."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    text = first_line(error)
    if isinstance(error, OfflineModeIsEnabled):
        return LensError(
            f"a run on NDIF asks the Hugging Face Hub how it spells {repo} (NDIF knows models by that "
            "name), but HF_HUB_OFFLINE is set: unset it"
        )
    if isinstance(error, HfHubHTTPError):
        return LensError(
            f"the Hugging Face Hub refused to name {repo} to NDIF ({text}): check the repo id, and for "
            "a gated model accept its licence and log in with `hf auth login`"
        )
    return LensError(f"cannot reach the Hugging Face Hub to name {repo} to NDIF ({text}): check the network connection")


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

    return isinstance(
        error, (httpx.TransportError, websocket.WebSocketException, ConnectionError, TimeoutError, OSError)
    )


def first_line(error: BaseException) -> str:
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
