"""The nnsight backend gives the bridge backend's lens, on every architecture and on both embedded models; the
remote path (NDIF) runs where no `lens` package is, and fails in one line when it cannot run (no key, no
network; a model NDIF does not run now and its other refusals: tests/test_remote.py)."""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lens.cli import main
from lens.errors import LensError
from lens.lenses.lenses import EXACT, RAW
from lens.models.bridge import plain_view
from lens.reads.check import compare_backends, lens_probabilities
from lens.reads.trace import collect, read, trace
from lens.remote import RemoteModel
from lens.remote.errors import SCHEDULE_URL, explain
from tests import ndif

TOLERANCE = 1e-4
HELD_OUT = [  # not the prompts the exactness tests use: padded together, one with a leading-space answer
    "Rome is the capital of",
    "Question: What is the capital of Italy? Answer:",
    "Berlin is the capital of Germany. Paris is the capital of",
]
HELD_OUT_ANSWERS = [" Italy", " Rome", " France"]
ARITHMETIC, SEVEN = "Question: What is 3 + 4? Answer:", " 7"  # the lens reads after " ", follows "7"
BIG = "meta-llama/Llama-3.1-70B"


def max_probability_difference(model, prompts) -> float:
    """max |p_nnsight - p_bridge| over prompts, layers and the whole vocabulary (exact lens)."""
    return float(
        (lens_probabilities(model, tuple(prompts), "nnsight") - lens_probabilities(model, tuple(prompts))).abs().max()
    )


def assert_same_traces(ours, theirs) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert (a.read_after, a.answer_token) == (b.read_after, b.answer_token)
        for x, y in zip(a.layers, b.layers, strict=True):
            assert abs(x.p_answer - y.p_answer) <= TOLERANCE and abs(x.kl_to_output - y.kl_to_output) <= 1e-3
            assert [t for t, _ in x.top] == [t for t, _ in y.top]
        assert abs(a.output.p_answer - b.output.p_answer) <= TOLERANCE


def test_nnsight_gives_the_bridge_lens_on_random_models(tiny_model):
    # Measured: 0 (bitwise equal) on every architecture, float32 on the CPU.
    assert max_probability_difference(tiny_model, HELD_OUT) <= TOLERANCE
    nn, bridge = collect(tiny_model, HELD_OUT, backend="nnsight"), collect(tiny_model, HELD_OUT)
    assert nn.backend == "nnsight" and (nn.output_logits - bridge.output_logits).abs().max() <= TOLERANCE


@pytest.mark.slow
def test_nnsight_gives_the_bridge_lens_on_embedded_models(real_model):
    # Measured: 0 on smollm2 and gemma3 (float32, CPU), padded batch included.
    assert max_probability_difference(real_model, HELD_OUT + [ARITHMETIC]) <= TOLERANCE
    prompts, answers = HELD_OUT + [ARITHMETIC], HELD_OUT_ANSWERS + [SEVEN]
    ours = trace(real_model, prompts, answers, backend="nnsight")
    assert ours[-1].read_after == ARITHMETIC + " " and ours[-1].answer_token == "7"
    assert_same_traces(ours, trace(real_model, prompts, answers))
    result = compare_backends(real_model)
    assert result.agrees and result.max_abs_diff <= TOLERANCE, result.summary()
    assert result.summary().startswith(f"{real_model.name} through nnsight on cpu (float32) agrees with the bridge")


def test_nnsight_runs_the_model_as_transformers_built_it_not_the_bridge(tiny_tokenizer, monkeypatch):
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    bridge_modules = {id(m) for m in model.hf_model.modules()}
    view = plain_view(model.hf_model)
    assert not any(isinstance(m, GeneralizedComponent) for m in view.modules())
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.hf_model.parameters()}  # no copy of weights
    assert {id(m) for m in model.hf_model.modules()} == bridge_modules  # the bridge's tree is untouched
    calls = []
    original_call = GeneralizedComponent.__call__
    monkeypatch.setattr(
        GeneralizedComponent, "__call__", lambda self, *a, **k: calls.append(self) or original_call(self, *a, **k)
    )
    collect(model, HELD_OUT[:1], backend="nnsight")
    assert calls == []
    collect(model, HELD_OUT[:1])
    assert calls  # the bridge backend runs through its components


def test_blocks_on_several_devices_are_read_as_ndif_places_them(tiny_tokenizer, monkeypatch):
    # NDIF loads a model with device_map="auto": blocks on several GPUs, accelerate's hooks moving the residual
    # stream from one to the next. Here the same hooks put the last block, the final norm and the unembedding on
    # the meta device (shapes, no values), the rest on the CPU.
    import nnsight
    import torch
    import transformers as hf
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module
    from nnsight import TransformersModel

    from lens.reads.backends import nnsight_reads
    from lens.tokens import encode
    from tests.conftest import ARCHITECTURES, SIZES

    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = ARCHITECTURES["llama"][0](vocab_size=len(tokenizer), pad_token_id=2, tie_word_embeddings=False, **SIZES)
    hf_model = hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    hf_model.name_or_path = "test/split"
    for module in (hf_model.model.layers[-1], hf_model.model.norm, hf_model.lm_head):
        module.to("meta")
        add_hook_to_module(module, AlignDevicesHook(execution_device=torch.device("meta")))
    monkeypatch.setitem(importlib.import_module("nnsight.modeling.huggingface")._ID_CACHE, "test/split", "test/split")
    nn = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    batch = encode(tokenizer, HELD_OUT[:2], n_ctx=SIZES["max_position_embeddings"])
    with nn.trace(dict(batch)):
        first, last = nnsight.save(nn.model.layers[0].output), nnsight.save(nn.model.layers[-1].output)
    hidden = [out[0] if isinstance(out, tuple) else out for out in (first, last)]
    assert [h.device.type for h in hidden] == ["cpu", "meta"]  # the blocks' outputs are on two devices
    here = nnsight_reads(nn, batch)
    assert here.resid.device.type == "meta" and here.resid.shape == (2, SIZES["num_hidden_layers"], 64)
    # The request NDIF runs, serialized: the lens reduced where the last block is.
    from lens.reads.backends import parts
    from lens.reads.intrace import lens_figures
    from lens.remote.blocks import SimulatedNDIF, ship_code

    ship_code()
    layers, norm, head = parts(nn)
    ids = {"exact": torch.tensor([[5, 7], [9, 9]])}
    with nn.trace(dict(batch), backend=SimulatedNDIF(nn), logits_to_keep=1):
        reduced = nnsight.save(
            lens_figures(nn, layers, norm, head, None, ("exact",), ids, torch.zeros(2, 0), 3, (1.0,))
        )
    assert reduced["exact"]["ids_ranks"].shape == (2, SIZES["num_hidden_layers"], 2)
    assert reduced["exact"]["top_ids"].device.type == "meta"


def test_a_backend_not_known_is_refused(tiny_model):
    with pytest.raises(LensError, match="unknown backend 'pytorch': use one of bridge, nnsight"):
        collect(tiny_model, HELD_OUT[:1], backend="pytorch")


# ---- the remote path, run here by nnsight's own dry run of a remote request ------------------------------------


def as_on_ndif(model, tiny_tokenizer, monkeypatch) -> RemoteModel:
    """`model` as a RemoteModel whose requests go through nnsight's dry run of a remote request: serialized,
    unpacked with the modules NDIF lacks hidden (`lens` too, which an editable install would otherwise still
    find), then run against the model here (`lens.remote.simulated`)."""
    from lens.remote import simulated

    return simulated(model)


@pytest.mark.parametrize("arch", ["gemma2", "llama"])  # gemma2: soft-capped (the cap is applied remotely)
def test_the_remote_request_runs_where_no_lens_package_is_and_gives_the_local_lens(arch, tiny_tokenizer, monkeypatch):
    from tests.conftest import random_model

    model = random_model(arch, tiny_tokenizer)
    remote = as_on_ndif(model, tiny_tokenizer, monkeypatch)
    residuals = collect(remote, HELD_OUT, HELD_OUT_ANSWERS, backend="nnsight")
    assert residuals.resid is None and residuals.output_logits is None  # figures came back, never tensors of logits
    assert residuals.reduced.lenses["exact"]["ids_ranks"].shape[:2] == (len(HELD_OUT), model.n_layers)
    assert_same_traces(read(remote, residuals, HELD_OUT_ANSWERS), trace(model, HELD_OUT, HELD_OUT_ANSWERS))
    # Only what was asked for came back: another lens, or another token, needs another job.
    with pytest.raises(LensError, match="reduced remotely for the exact lens only: collect it with the raw lens"):
        read(remote, residuals, HELD_OUT_ANSWERS, lens=RAW)
    with pytest.raises(LensError, match="reduced remotely without following token ids"):
        read(remote, residuals, HELD_OUT_ANSWERS, watch=[[" Paris"]] * len(HELD_OUT))
    with pytest.raises(LensError, match="runs remotely, through nnsight: use backend 'nnsight'"):
        collect(remote, HELD_OUT)


@pytest.mark.slow
def test_the_remote_path_gives_the_local_figures_on_embedded_models(real_model, tiny_tokenizer, monkeypatch):
    """Both lenses, watched tokens and candidates' output probabilities, reduced inside the simulated job: the
    same figures as read here (measured: equal bit for bit; the same chunks of prompts are reduced together)."""
    from lens.reads.records import Wanted
    from lens.reads.trace import output_probabilities
    from lens.tokens import variants

    prompts, answers = HELD_OUT + [ARITHMETIC], HELD_OUT_ANSWERS + [SEVEN]
    watch = [[*variants(a), " Rome", " Germany"] for a in answers]
    remote = as_on_ndif(real_model, tiny_tokenizer, monkeypatch)
    candidates = [[real_model.tokenizer.encode(w, add_special_tokens=False)[-1] for w in (" Paris", " Rome")]] * 4
    far = collect(
        remote,
        prompts,
        answers,
        backend="nnsight",
        wanted=Wanted(answers=answers, lenses={"exact": watch, "raw": None}, output_ids=candidates),
    )
    here = collect(real_model, prompts, answers)
    for lens, words in ((EXACT, watch), (RAW, None)):
        ours, theirs = read(remote, far, answers, words, lens=lens), read(real_model, here, answers, words, lens=lens)
        for a, b in zip(ours, theirs, strict=True):
            assert (a.read_after, a.answer_token) == (b.read_after, b.answer_token)
            for x, y in zip(a.layers, b.layers, strict=True):
                assert x.rank_answer == y.rank_answer and [t for t, _ in x.top] == [t for t, _ in y.top]
                for u, v in ((x.p_answer, y.p_answer), (x.entropy, y.entropy), (x.kl_to_output, y.kl_to_output)):
                    assert abs(u - v) <= TOLERANCE
            for w, v in zip(a.watched, b.watched, strict=True):
                assert w.rank == v.rank and max(abs(s - t) for s, t in zip(w.p, v.p)) <= TOLERANCE
    for ours, theirs in zip(output_probabilities(far, candidates), output_probabilities(here, candidates)):
        assert max(abs(a - b) for a, b in zip(ours, theirs)) <= TOLERANCE


@pytest.mark.parametrize("arch", ["gemma2", "llama"])
def test_the_models_own_continuation_the_grid_and_patching_run_remotely_as_here(arch, tiny_tokenizer, monkeypatch):
    from lens.reads.generate import continue_greedy
    from lens.reads.grid import lens_grid
    from lens.reads.patching import patch_many, patch_residuals
    from tests.conftest import random_model

    model = random_model(arch, tiny_tokenizer)
    remote = as_on_ndif(model, tiny_tokenizer, monkeypatch)
    assert continue_greedy(remote, HELD_OUT) == continue_greedy(model, HELD_OUT)  # generated there, 8 tokens
    answers = [["zz"]] * len(HELD_OUT)  # cut where decided there, stopped there here: the same replies
    assert continue_greedy(remote, HELD_OUT, answers=answers) == continue_greedy(model, HELD_OUT, answers=answers)
    far, here = lens_grid(remote, HELD_OUT[0]), lens_grid(model, HELD_OUT[0])
    assert far.top1 == here.top1 and far.tokens == here.tokens
    assert max(abs(a - b) for x, y in zip(far.p, here.p) for a, b in zip(x, y)) <= TOLERANCE
    # One forward per case: the clean prompt, the corrupted one and each patched row in one batch.
    cases = [
        ("The capital of Germany is", "The capital of France is", " Berlin", [1, -1]),
        ("The capital of France is", "The capital of Germany is", " Paris", None),
    ]
    for ours, case in zip(patch_many(remote, cases), cases, strict=True):
        theirs = patch_residuals(model, *case)
        assert (ours.positions, ours.tokens) == (theirs.positions, theirs.tokens)
        for a, b in ((ours.p_clean, theirs.p_clean), (ours.p_corrupt, theirs.p_corrupt)):
            assert abs(a - b) <= TOLERANCE * 1e-2
        gap = theirs.p_clean - theirs.p_corrupt  # restored shares are differences over the gap: compare p
        assert (
            max(abs(a - b) * abs(gap) for x, y in zip(ours.restored, theirs.restored) for a, b in zip(x, y))
            <= TOLERANCE * 1e-2
        )


def test_attention_is_refused_remotely_with_its_reason(tiny_tokenizer, monkeypatch):
    from lens.errors import NotRemote
    from lens.reads.attention import attention_from_last
    from tests.conftest import random_model

    remote = as_on_ndif(random_model("llama", tiny_tokenizer), tiny_tokenizer, monkeypatch)
    with pytest.raises(NotRemote, match=r"^attention patterns are not read on NDIF: it runs models with fused "):
        attention_from_last(remote, HELD_OUT[0])


def test_a_remote_read_whose_last_block_is_not_the_output_is_refused(tiny_tokenizer, monkeypatch):
    from tests.conftest import random_model

    remote = as_on_ndif(random_model("llama", tiny_tokenizer), tiny_tokenizer, monkeypatch)
    remote.softcap = 1.0  # a cap the model does not have: the lens at the last block is not its output
    with pytest.raises(LensError, match=r"the lens is not exact on tiny-llama as NDIF runs it"):
        collect(remote, HELD_OUT[:1], backend="nnsight")


NOT_DEDICATED = (
    "Model nnsight.modeling.language.LanguageModel:{...} is not dedicated and hotswapping is not "
    "supported for this API key."
)


@pytest.mark.parametrize(
    "error, message",
    [
        (
            NOT_DEDICATED,
            f"NDIF does not run test/m for this API key now ({NOT_DEDICATED}): see {SCHEDULE_URL} "
            "for when it is scheduled",
        ),
        (
            "Failed to send request: Invalid API key",
            "NDIF refused the API key (Failed to send request: Invalid API "
            "key): check NDIF_API_KEY (get one at https://login.ndif.us)",
        ),
        ("CUDA out of memory\nmore", "NDIF could not run test/m: CUDA out of memory"),  # the first line only
    ],
)
def test_what_ndif_answers_becomes_one_line(error, message):
    from nnsight.intervention.backends.remote import RemoteError

    assert str(explain(RemoteError(error), "test/m", "https://api.ndif.us")) == message


def test_a_remote_run_that_cannot_reach_ndif_is_one_line(tiny_tokenizer, monkeypatch):
    from nnsight import CONFIG

    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    remote = as_on_ndif(model, tiny_tokenizer, monkeypatch)
    monkeypatch.setattr(remote.nn, "_remote_backend", type(remote.nn)._remote_backend.__get__(remote.nn))
    # The real remote backend, to a port nothing listens on.
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(CONFIG.API, "HOST", host)
    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    remote.via, remote.host, remote.model_key = True, host, ndif.model_key("test/tiny-llama")  # as `connect` sets
    with pytest.raises(LensError, match=rf"^cannot reach NDIF at {host} \(.*\): check the network connection$"):
        trace(remote, HELD_OUT[:1], backend="nnsight")


# ---- the command line ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("prompt, answer", [(HELD_OUT[1], " Rome"), (ARITHMETIC, SEVEN)])
def test_trace_json_through_nnsight_equals_the_default(capsys, cli_smollm2, prompt, answer):
    outputs = []
    for backend in ([], ["--backend", "nnsight"]):
        assert main(["trace", "smollm2", prompt, "--answer", answer, "--json", "--device", "cpu", *backend]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    default, nn = outputs
    for key in ("read_after", "answer_token", "n_layers"):
        assert nn[key] == default[key]
    for a, b in zip(nn["layers"], default["layers"], strict=True):
        assert abs(a["p_answer"] - b["p_answer"]) <= TOLERANCE and a["rank_answer"] == b["rank_answer"]
        assert all(abs(p - q) <= TOLERANCE and s == t for (s, p), (t, q) in zip(a["top"], b["top"], strict=True))
    assert abs(nn["output"]["p_answer"] - default["output"]["p_answer"]) <= TOLERANCE


@pytest.mark.slow
def test_check_compares_the_backends(capsys, cli_smollm2):
    assert main(["check", "smollm2", "--backend", "nnsight", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smollm2 through nnsight on cpu (float32) agrees with the bridge backend: max |Δp| = ")


def lens_command(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """`lens ARGV` in a fresh process (nnsight reads its key and host when imported), nnsight's own
    configuration file out of the way."""
    base = {k: v for k, v in os.environ.items() if k not in ("NDIF_API_KEY", "NDIF_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "lens.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=base | {"NNSIGHT_CONFIG": os.devnull} | env,
    )


@pytest.fixture
def lens_fresh(capsys, monkeypatch):
    """`lens ARGV` in this process as a fresh one would run it (a process costs 6-16 s of imports): the
    environment `env` and nnsight's configuration reread from it as nnsight reads it when imported (its file
    out of the way), restored afterwards."""
    from nnsight import CONFIG
    from nnsight.schema.config import Config

    def run(*argv: str, **env: str) -> subprocess.CompletedProcess:
        monkeypatch.delenv("NDIF_API_KEY", raising=False)
        monkeypatch.delenv("NDIF_HOST", raising=False)
        for var, value in {"NNSIGHT_CONFIG": os.devnull, **env}.items():
            monkeypatch.setenv(var, value)
        fresh = Config.load()
        monkeypatch.setattr(CONFIG.API, "APIKEY", fresh.API.APIKEY)
        monkeypatch.setattr(CONFIG.API, "HOST", fresh.API.HOST)
        capsys.readouterr()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, status, out, err)

    return run


def assert_one_line(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith("lens: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr, done.stderr


def test_remote_without_an_api_key_says_where_to_get_one(lens_fresh):
    done = lens_fresh("trace", BIG, "x", "--remote")
    assert_one_line(done, "a run on NDIF needs an API key: set NDIF_API_KEY=... (get one at https://login.ndif.us)")


def assert_unreachable(done: subprocess.CompletedProcess, host: str) -> None:
    """One line naming the host, the network's own words, and what to do."""
    assert_one_line(done, f"lens: cannot reach NDIF at {host} (")
    assert done.stderr.endswith("): check the network connection\n"), done.stderr


@pytest.mark.parametrize("host", ["https://api.ndif.invalid", "closed port"])
def test_remote_without_network_says_ndif_cannot_be_reached(lens_fresh, host):
    host = f"http://127.0.0.1:{_closed_port()}" if host == "closed port" else host
    done = lens_fresh("trace", BIG, "x", "--remote", NDIF_API_KEY="dummy", NDIF_HOST=host)
    assert_unreachable(done, host)


def test_remote_with_no_host_given_names_nnsights_default_host_when_it_cannot_be_reached(lens_fresh):
    # The command as it is (no NDIF_HOST), with every HTTPS request sent to a proxy nothing listens on:
    # NDIF cannot be reached whatever this machine's network, and the line names the host nnsight would use.
    proxy = f"http://127.0.0.1:{_closed_port()}"
    done = lens_fresh(
        "trace",
        BIG,
        "x",
        "--remote",
        NDIF_API_KEY="dummy",
        HTTPS_PROXY=proxy,
        https_proxy=proxy,
        NO_PROXY="",
        no_proxy="",
    )
    assert_unreachable(done, "https://api.ndif.us")


@pytest.fixture
def fake_ndif():
    """A local server answering NDIF's /status with `payload` (set it; `tests.ndif` writes the real format)."""

    class Status(BaseHTTPRequestHandler):
        payload: dict = ndif.status()

        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps(Status.payload).encode() if self.path == "/status" else b"{}"
            self.send_response(200 if self.path == "/status" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Status, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_reads_only_config_and_tokenizer_from_the_hub_never_weights(fake_ndif, tmp_path):
    # In a process of its own: the Hub's cache folder and offline mode are read when huggingface_hub is imported.
    status, host = fake_ndif
    status.payload = ndif.status(ndif.hot(BIG))
    done = lens_command(
        "trace",
        BIG,
        "x",
        "--remote",
        NDIF_API_KEY="dummy",
        NDIF_HOST=host,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
    )
    assert_one_line(done, f"cannot read {BIG}'s config and tokenizer from the Hugging Face Hub")
    assert "never the weights" in done.stderr
    assert not list((tmp_path / "hf").rglob("*.safetensors"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["trace", "smollm2", "x", "--remote"], "--remote runs Hugging Face Hub models on NDIF by repo id"),
        (
            ["trace", BIG, "x", "--remote", "--device", "cpu"],
            "--remote runs the model on NDIF through nnsight: drop --device",
        ),
        (["trace", BIG, "x", "--remote", "--backend", "bridge"], "drop --backend bridge"),
    ],
)
def test_remote_refuses_what_does_not_apply(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("lens: ") and message in err and err.count("\n") == 1


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
