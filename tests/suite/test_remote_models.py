"""Models that run on NDIF (models.toml `remote = true`) in the findings: connected to when the run asks for them,
before anything loads or is sent (no key, no network: one line, exit status 2); left out of a run that does not
ask; recorded as run on NDIF; what NDIF cannot give skips with its reason. `LENS_NDIF=simulate` sends a model
here through the same remote path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lens.models.loader
import lens.remote
from lens.errors import LensError, NotRemote
from lens.models.registry import registry
from suite.session import SIMULATED_BACKEND, SuiteSession

ROOT = Path(__file__).parent.parent.parent
ON_NDIF = [spec.name for spec in registry().values() if getattr(spec, "remote", False)]
BIG = ON_NDIF[0]


def test_the_registry_has_the_models_ndif_serves_to_every_key():
    assert {"llama31-70b", "llama31-8b"} <= set(ON_NDIF)
    assert registry()["llama31-70b"].repo == "meta-llama/Llama-3.1-70B"


def far_model(host: str = "https://api.ndif.us") -> SimpleNamespace:
    return SimpleNamespace(
        name=BIG,
        host=host,
        device="ndif (api.ndif.us)",
        dtype=torch.bfloat16,
        n_layers=80,
        weights_id="nnsight.modeling.transformers.TransformersModel:{...}",
        remote=True,
    )


def test_a_model_on_ndif_runs_only_when_asked_for(monkeypatch):
    monkeypatch.setattr(lens.remote, "connect", lambda name: pytest.fail("connected though not asked for"))
    session = SuiteSession.from_values([], device=None, markexpr="not slow")
    assert not set(ON_NDIF) & set(session.names)
    assert session.on_ndif[BIG].endswith(f"findings/ -m {BIG}") or session.on_ndif[BIG].endswith(f"findings -m {BIG}")


def test_a_model_on_ndif_asked_for_is_connected_at_once_and_recorded_as_run_there(monkeypatch):
    connected = []
    monkeypatch.setattr(lens.remote, "connect", lambda name: connected.append(name) or far_model())
    monkeypatch.setattr(lens.models.loader, "load", lambda *a, **k: pytest.fail("loaded a model here"))
    session = SuiteSession.from_values([], device=None, markexpr=BIG)
    assert connected == [BIG] and BIG in session.names
    artefacts = session.artefacts(BIG)
    assert artefacts.get("x", lambda model: model.name) == BIG
    record = artefacts.record
    assert (record.device, record.dtype, record.backend, record.n_layers) == (
        "ndif (api.ndif.us)",
        "bfloat16",
        "nnsight",
        80,
    )
    assert record.source.endswith("(Hugging Face meta-llama/Llama-3.1-70B, on NDIF)")


def test_a_model_on_ndif_that_cannot_be_reached_ends_the_run_in_one_line(monkeypatch):
    def refuse(name):
        raise LensError("cannot reach NDIF at https://api.ndif.us (Connection refused): check the network connection")

    monkeypatch.setattr(lens.remote, "connect", refuse)
    with pytest.raises(pytest.exit.Exception) as stop:
        SuiteSession.from_values([], device=None, markexpr=BIG)
    assert stop.value.returncode == 2
    assert str(stop.value.msg) == (
        f"{BIG} runs on NDIF: cannot reach NDIF at https://api.ndif.us (Connection "
        "refused): check the network connection"
    )


def test_what_ndif_cannot_give_skips_with_its_reason_every_time(monkeypatch):
    monkeypatch.setattr(lens.remote, "connect", lambda name: far_model())
    artefacts = SuiteSession.from_values([], device=None, markexpr=BIG).artefacts(BIG)
    calls = []

    def attention(model):
        calls.append(1)
        raise NotRemote("attention patterns are not read on NDIF: it runs models with fused attention")

    for _ in range(2):
        with pytest.raises(pytest.skip.Exception, match="^attention patterns are not read on NDIF"):
            artefacts.get("attention", attention)
    assert calls == [1]


def test_simulate_sends_a_model_here_through_the_remote_path(monkeypatch, tiny_tokenizer):
    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    monkeypatch.setattr(lens.models.loader, "load", lambda *a, **k: model)
    monkeypatch.setenv("LENS_NDIF", "simulate")
    session = SuiteSession({"smollm2": "smollm2"}, device=None)
    artefacts = session.artefacts("smollm2")
    remote = artefacts.get("x", lambda m: m)
    assert isinstance(remote, lens.remote.RemoteModel) and remote.via == "local" and remote.nn._module is not None
    assert (artefacts.record.device, artefacts.record.backend) == ("cpu", SIMULATED_BACKEND)


# ---- the command itself ----------------------------------------------------------------------------------------


def findings(*argv: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """`pytest findings/ ARGV` in a fresh process, with neither an NDIF key nor nnsight's configuration file."""
    base = {k: v for k, v in os.environ.items() if k not in ("NDIF_API_KEY", "NDIF_HOST")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "findings/", "-p", "no:cacheprovider", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=base | {"NNSIGHT_CONFIG": os.devnull, "PYTHONPATH": str(ROOT)} | env,
    )
    return done, time.perf_counter() - start


def assert_stops_in_one_line(done: subprocess.CompletedProcess, message: str) -> None:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"Exit: {BIG} runs on NDIF: {message}"), lines


def test_findings_on_ndif_without_a_key_stop_at_once_with_one_line():
    done, took = findings("-m", BIG)
    assert_stops_in_one_line(
        done, "a run on NDIF needs an API key: set NDIF_API_KEY=... (get one at https://login.ndif.us)"
    )
    assert took < 60  # nothing loaded


def test_findings_on_ndif_without_a_network_stop_at_once_with_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once released
    done, took = findings("-m", BIG, NDIF_API_KEY="dummy", NDIF_HOST=host)
    assert_stops_in_one_line(done, f"cannot reach NDIF at {host} (")
    assert took < 60


def test_the_run_says_what_it_will_send_a_model_on_ndif_before_it_sends_anything(monkeypatch, capsys):
    from findings.data import SETS
    from findings.model_findings import ndif_plan

    monkeypatch.setattr(lens.remote, "connect", lambda name: far_model())
    session = SuiteSession.from_values([], device=None, markexpr=BIG)
    session.selected[BIG] = [
        f"findings/test_01_convergence_depth.py::test_convergence_depth[{BIG}-{name}]" for name in SETS
    ] + [f"findings/test_14_patching_handover.py::test_x[{BIG}-capitals]"]
    session.remote_plan = lambda name, model, tests: ndif_plan(False, model, tests)
    session.artefacts(BIG).get("x", lambda model: 1)
    said = capsys.readouterr().err
    # The four sets in every form (753 prompts), a job per 16 for the continuation and one for the lens, the grid,
    # patching 65 capitals 8 a job and the notes' fact at every position.
    assert (
        f"{BIG} runs on NDIF (https://api.ndif.us): nothing loads here; the selected tests send 753 prompts in "
        "about 117 jobs, and at most about 17.3 MB comes back;" in said
    )
