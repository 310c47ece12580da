"""NDIF, as its server answers: `--remote` goes ahead only for a model NDIF runs now for an ordinary API key (a
HOT, RUNNING, dedicated deployment of the model key nnsight sends), and every refusal or failure is one line
naming its cause (the exception a server traceback ends with, the Hub, an nnsight NDIF no longer accepts)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

import lens.remote as remote
from lens.errors import LensError
from lens.models.registry import HubModel
from lens.remote import blocks, session
from lens.remote.errors import explain
from tests import ndif

ROOT = Path(__file__).parent.parent
HOST = "https://api.ndif.us"
RUNNING_ELSEWHERE = [ndif.hot("other/served"), ndif.cold("other/cold"), ndif.warm("other/warm")]
"""Other models in the same /status: only the first is running for an ordinary key."""


@pytest.fixture
def connect_to(tiny_tokenizer, monkeypatch):
    """`lens.remote.connect(repo)` against a stand-in /status, the Hub spelling `repo` as `canonical`; the model
    is a random one built here (no config is read from the Hub)."""
    import transformers as hf
    from nnsight import CONFIG, TransformersModel

    from tests.conftest import ARCHITECTURES, SIZES

    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = ARCHITECTURES["llama"][0](vocab_size=len(tokenizer), pad_token_id=2, **SIZES)
    hf_model = hf.AutoModelForCausalLM.from_config(config)
    id_cache = importlib.import_module("nnsight.modeling.huggingface")._ID_CACHE
    monkeypatch.setenv("NDIF_API_KEY", "dummy")
    monkeypatch.setenv("NDIF_HOST", HOST)
    monkeypatch.delenv("NDIF_HOTSWAPPING", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)  # connect sets both: restored after the test
    monkeypatch.setattr(CONFIG.API, "HOST", CONFIG.API.HOST)

    def meta_model(repo: str):
        hf_model.name_or_path = repo
        return TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")

    monkeypatch.setattr(session, "_meta_model", meta_model)

    def connect(repo: str, canonical: str, *entries: ndif.Entry) -> remote.RemoteModel:
        payload = ndif.status(*entries, *RUNNING_ELSEWHERE)
        monkeypatch.setattr(
            httpx, "get", lambda url, **kw: httpx.Response(200, json=payload, request=httpx.Request("GET", url))
        )
        monkeypatch.setitem(id_cache, repo, canonical)  # what the Hub answers nnsight for `repo`
        return remote.connect(repo)

    return connect


def test_a_model_ndif_runs_for_every_key_is_accepted_under_the_hubs_spelling(connect_to):
    connected = connect_to("test/m", "test/m", ndif.hot("test/m"))
    assert connected.repo == "test/m" and connected.n_layers == 4
    # A renamed repo: NDIF knows the model by the name the Hub gives it now, as nnsight sends it.
    assert connect_to("old-org/m", "test/m", ndif.hot("test/m")).repo == "old-org/m"


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            [ndif.hot("test/m", dedicated=False)],
            'NDIF runs test/m now but not as a dedicated model, which it refuses to an ordinary API key ("Model is not '
            'dedicated and hotswapping is not supported for this API key"): see https://nnsight.net/status/ for when '
            "it is scheduled, or set NDIF_HOTSWAPPING=1 if your key has hotswapping access",
        ),
        (
            [ndif.hot("test/m", state="DEPLOYING")],
            "NDIF lists test/m but it is not running now (HOT, DEPLOYING): try again in a few minutes",
        ),
        (
            [ndif.hot("test/m", state="UNHEALTHY")],
            "NDIF lists test/m but it is not running now (HOT, UNHEALTHY): try again later (https://discuss.ndif.us)",
        ),
        (
            [ndif.warm("test/m")],
            "NDIF lists test/m but it is not running now (WARM): see https://nnsight.net/status/ for when it is "
            "scheduled (running now: other/served)",
        ),
        (
            [ndif.cold("test/m")],
            "NDIF lists test/m but it is not running now (COLD): see https://nnsight.net/status/ for when it is "
            "scheduled (running now: other/served)",
        ),
        (
            [ndif.hot("test/m", task="text-classification")],
            "NDIF runs test/m only as TransformersModel for text-classification, not as TransformersModel for "
            "text-generation that nnsight sends: run it here instead",
        ),
        ([], "NDIF does not host test/m: only the models NDIF runs now run there (now: other/served)"),
    ],
    ids=["not-dedicated", "deploying", "unhealthy", "warm", "cold", "other-task", "absent"],
)
def test_a_model_ndif_does_not_run_now_for_an_ordinary_key_is_refused_in_one_line(connect_to, entries, message):
    with pytest.raises(LensError) as refused:
        connect_to("test/m", "test/m", *entries)
    assert str(refused.value) == message


def test_a_model_listed_under_another_spelling_than_the_hubs_is_refused(connect_to):
    # nnsight sends the Hub's spelling: a deployment under the one typed is not the one NDIF would run.
    with pytest.raises(LensError) as refused:
        connect_to("old-org/m", "test/m", ndif.hot("old-org/m"))
    assert str(refused.value) == (
        "NDIF does not host test/m (the Hub's name for old-org/m): only the models NDIF "
        "runs now run there (now: old-org/m, other/served)"
    )


def test_a_key_with_hotswapping_access_is_not_held_to_what_runs_now(connect_to, monkeypatch):
    monkeypatch.setenv("NDIF_HOTSWAPPING", "1")  # NDIF deploys a model such a key asks for
    assert connect_to("test/m", "test/m", ndif.cold("test/m")).repo == "test/m"


# ---- what a failed run says ------------------------------------------------------------------------------------


def an_ndif_model(repo: str = "test/m") -> remote.RemoteModel:
    return remote.RemoteModel(
        spec=HubModel(name="m", repo=repo),
        repo=repo,
        nn=None,
        tokenizer=None,
        n_layers=1,
        n_ctx=1,
        softcap=None,
        host=HOST,
    )


def test_a_server_error_is_told_by_its_exception_not_by_its_traceback():
    from nnsight.intervention.backends.remote import RemoteError

    def run():  # the server runs the request; a shape error in it
        return torch.zeros(2, 3) @ torch.zeros(2, 3)

    try:
        run()
    except RuntimeError as error:
        shape_error = error
    description = ndif.error_description(shape_error)
    assert description.startswith("Traceback (most recent call last):")
    line = str(explain(RemoteError(description), "test/m", HOST))
    assert line == f"NDIF could not run test/m: RuntimeError: {shape_error}"


def test_a_chained_server_error_is_told_by_the_exception_raised_last():
    from nnsight.intervention.backends.remote import RemoteError

    try:
        try:
            {}["layers"]
        except KeyError as missing:
            raise ValueError("the request names a module the model does not have\nsee its tree") from missing
    except ValueError as error:
        description = ndif.error_description(error)
    assert "The above exception was the direct cause" in description
    line = str(explain(RemoteError(description), "test/m", HOST))
    assert line == "NDIF could not run test/m: ValueError: the request names a module the model does not have"


def test_an_nnsight_older_than_ndifs_is_told_with_both_versions():
    from nnsight.intervention.backends.remote import RemoteError

    line = str(explain(RemoteError(ndif.too_old("0.8.1", "0.9.0")), "test/m", HOST))
    assert line == (
        "NDIF needs nnsight >= 0.9.0 (this environment has 0.8.1): try it with "
        "`./run upgrade-check nnsight==0.9.0`, then keep it with `./run upgrade-check --take`"
    )


def test_a_hub_failure_as_the_trace_starts_is_told_as_the_hubs(tiny_tokenizer, monkeypatch):
    # nnsight names the model to NDIF by the Hub's spelling of its repo id, asked of the Hub as the trace starts.
    import huggingface_hub.constants
    from nnsight import CONFIG

    from lens.reads.backends import nnsight_model
    from lens.reads.trace import trace
    from tests.conftest import random_model
    from tests.test_backends import _closed_port

    model = random_model("llama", tiny_tokenizer)
    model.hf_model.name_or_path = "test/hubless"
    monkeypatch.delitem(
        importlib.import_module("nnsight.modeling.huggingface")._ID_CACHE, "test/hubless", raising=False
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(CONFIG.API, "HOST", host)
    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    far = remote.RemoteModel(
        spec=HubModel(name="hubless", repo="test/hubless"),
        repo="test/hubless",
        nn=nnsight_model(model),
        tokenizer=model.tokenizer,
        n_layers=model.n_layers,
        n_ctx=model.n_ctx,
        softcap=None,
        host=host,
    )
    with pytest.raises(
        LensError,
        match=r"^cannot reach the Hugging Face Hub to name test/hubless to NDIF \(.+\): "
        r"check the network connection$",
    ):
        trace(far, ["Rome is the capital of"], [" Italy"], backend="nnsight")


def test_an_older_ndifs_refusal_of_another_python_says_which_python_to_use():
    from nnsight.intervention.backends.remote import RemoteError

    refused = RemoteError(f"Failed to send request: {ndif.python_mismatch('3.11', '3.12')}")
    line = str(explain(refused, "test/m", HOST))
    assert line == (
        "NDIF refuses Python 3.11: it needs Python 3.12; make the project's environment with it: "
        "`rm -rf .venv && python3.12 -m venv .venv`, then `./run` installs the locked libraries into it"
    )


# ---- against a stand-in NDIF: what it refuses as a request arrives ---------------------------------------------

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
NEXT = f"{sys.version_info.major}.{sys.version_info.minor + 1}"


@pytest.mark.parametrize(
    "refusing, said",
    [
        (
            {"min_python": NEXT},
            f"NDIF refuses Python {HERE}: it needs Python {NEXT} or newer; make the project's environment with it: "
            f"`rm -rf .venv && python{NEXT} -m venv .venv`, then `./run` installs the locked libraries into it",
        ),
        (
            {"min_nnsight": "9.0.0"},
            "NDIF needs nnsight >= 9.0.0 (this environment has 0.8.1): try it with "
            "`./run upgrade-check nnsight==9.0.0`, then keep it with `./run upgrade-check --take`",
        ),
        (
            {"key": "another"},
            f"NDIF refused the API key (Failed to send request: {ndif.KEY_REFUSED}): check NDIF_API_KEY (get one at "
            "https://login.ndif.us)",
        ),
    ],
    ids=["python", "nnsight", "key"],
)
def test_what_ndif_refuses_as_a_job_arrives_is_one_line_and_nothing_is_noted(
    tiny_tokenizer, monkeypatch, refusing, said
):
    from nnsight import CONFIG

    from lens.remote import jobs
    from tests.conftest import random_model
    from tests.ndif import FakeNDIF

    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    far = remote.simulated(random_model("llama", tiny_tokenizer))
    with FakeNDIF(**refusing) as fake:
        far.via, far.host, far.model_key = True, fake.host, ndif.model_key("test/tiny-llama")
        with pytest.raises(LensError) as refused:
            far.grid("The capital of Germany is")
    assert str(refused.value) == said
    assert fake.requests == [] and not list(jobs.jobs_dir(far.identity).glob("*.job"))


# ---- a model spread over devices, as NDIF loads one (device_map="auto") ----------------------------------------


def test_the_reduction_is_made_where_the_lens_logits_are_whatever_device_the_output_is_on():
    from lens.reads.reduce import reduce

    logits = torch.zeros(2, 3, 11, device="meta")  # the unembedding's device
    output = torch.randn(2, 11)  # the last block's
    reduced = reduce(logits, output, torch.tensor([[1, 2], [3, 3]]), 4, (1.0, 2.0), torch.tensor([[5], [6]]))
    assert {t.device.type for t in reduced.values()} == {"meta"}
    assert reduced["ids_ranks"].shape == (2, 3, 2) and reduced["kl"].shape == (2, 3, 2)


def test_a_tied_embedding_model_with_its_unembedding_on_another_device_than_its_last_block(tiny_tokenizer, monkeypatch):
    # device_map="auto" keeps a tied unembedding with the embedding, on the first GPU, and the last block on the
    # last: the lens's logits come out on the first, the output is read after the last block. Here accelerate's
    # hooks put the unembedding on the meta device (shapes, no values), the blocks and the final norm on the CPU.
    # What this cannot show without two GPUs: values computed across two real devices, and accelerate's own
    # placement of a tied model (the embedding stays on the CPU here).
    import nnsight
    import transformers as hf
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module
    from nnsight import TransformersModel

    from lens.reads.backends import parts
    from lens.reads.intrace import lens_figures
    from lens.tokens import encode
    from tests.conftest import ARCHITECTURES, SIZES

    tokenizer = hf.AutoTokenizer.from_pretrained(tiny_tokenizer)
    config = ARCHITECTURES["llama"][0](vocab_size=len(tokenizer), pad_token_id=2, tie_word_embeddings=True, **SIZES)
    hf_model = hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    assert hf_model.lm_head.weight is hf_model.model.embed_tokens.weight
    hf_model.name_or_path = "test/tied"
    hf_model.lm_head.to("meta")
    add_hook_to_module(hf_model.lm_head, AlignDevicesHook(execution_device=torch.device("meta")))
    monkeypatch.setitem(importlib.import_module("nnsight.modeling.huggingface")._ID_CACHE, "test/tied", "test/tied")
    nn = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    batch = encode(tokenizer, ["Rome is the capital of", "The capital of Germany is"], n_ctx=256)
    blocks.ship_code()
    layers, norm, head = parts(nn)
    save = nnsight.save
    with nn.trace(dict(batch), backend=blocks.SimulatedNDIF(nn), logits_to_keep=1):
        reduced = save(
            lens_figures(
                nn,
                layers,
                norm,
                head,
                None,
                ("exact", "raw"),
                {"exact": torch.tensor([[5, 7], [9, 9]]), "raw": torch.tensor([[5], [9]])},
                torch.tensor([[4], [8]]),
                3,
                (1.0,),
            )
        )
    assert reduced["exact"]["ids_ranks"].shape == (2, SIZES["num_hidden_layers"], 2)
    assert reduced["raw"]["top_ids"].device.type == "meta"  # reduced where the unembedding is


# ---- the shipped code, from its serialized form, where no `lens` is ---------------------------------------------


class Keep:
    """A backend that keeps the request nnsight would send (serialized and compressed as it sends it)."""

    def __call__(self, tracer):
        from nnsight import CONFIG
        from nnsight.ndif import pull_env
        from nnsight.schema.request import RequestModel

        pull_env()
        self.compress = CONFIG.API.COMPRESS
        self.blob = RequestModel.serialize(tracer, self.compress)


SANDBOX = (
    "builtins",
    "torch",
    "torch.",
    "collections",
    "collections.",
    "math",
    "typing",
    "typing.",
    "numpy",
    "numpy.",
    "operator",
    "_operator",
    "enum",
    "time",
    "copyreg",
    "pickle",
    "cloudpickle",
    "cloudpickle.",
)
"""The modules but nnsight's that NDIF's last public sandbox whitelist lets a request name while it is unpacked
(src/services/ray/src/ray/nn/security/whitelist.yaml: its modules and deserialization modules)."""


def canonical_modules(nn, batch) -> set[str]:
    """The modules nnsight 0.8.1's own request format names: a trace, a generation and a session, each saving the
    output with `.save()`, as every NDIF user's request does (nnsight's classes: its tracer, envoys, serialization)."""
    from tests.ndif import named

    found = set()
    for kind in ("trace", "generate", "session"):
        keep = Keep()
        if kind == "trace":
            with nn.trace(dict(batch), backend=keep):
                nn.output.logits.save()
        elif kind == "generate":
            with nn.generate(dict(batch), max_new_tokens=2, backend=keep) as tracer:
                tracer.result.save()
        else:
            with nn.session(backend=keep):
                with nn.trace(dict(batch)):
                    nn.output.logits.save()
        found |= named(keep.blob, keep.compress, nn)
    return found


def test_the_shipped_requests_run_from_their_serialized_form_where_no_lens_is(
    tiny_tokenizer, tiny_folder, tmp_path, monkeypatch
):
    # Each kind of job (the lens, its own continuation, the grid, patching), serialized as nnsight sends it, is
    # unpacked and run in a fresh process where `lens` cannot be imported and only the modules NDIF's sandbox
    # allows may be named (nnsight's own request format, torch, collections...: never `nnsight` itself), on the
    # same weights loaded there; it gives what the job gives here.
    from nnsight import CONFIG

    from lens.reads.patching import Case
    from lens.reads.trace import collect
    from lens.remote import jobs
    from lens.tokens import encode
    from tests.conftest import random_model
    from tests.ndif import named

    monkeypatch.setattr(CONFIG.API, "COMPRESS", True)
    model = random_model("llama", tiny_tokenizer)
    here = remote.simulated(model)
    ran, run = [], jobs.run

    def keeping(runner, batch, what, out=None):
        results = run(runner, batch, what, out)
        ran.extend(zip(batch, results))
        return results

    monkeypatch.setattr(jobs, "run", keeping)
    prompts = ["Rome is the capital of", "The capital of Germany is"]
    collect(here, prompts, [" Italy", " Berlin"], backend="nnsight")
    here.continuations(prompts, 3)
    here.grid(prompts[1])
    clean = torch.tensor([model.tokenizer.encode(prompts[1], add_special_tokens=False)])
    corrupt = clean.clone()
    corrupt[0, -2] = int(clean[0, 1])
    here.patch([Case(prompts[1], "", " Berlin", clean, corrupt, target=7, positions=(1, clean.shape[1] - 2))])
    assert sorted({job.kind for job, _ in ran}) == ["continuation", "grid", "lens", "patching"]

    allowed = canonical_modules(here.nn, encode(model.tokenizer, prompts, model.n_ctx)) | set(SANDBOX)
    assert "nnsight" not in allowed
    folder = tmp_path / "requests"
    folder.mkdir()
    for n, (job, _) in enumerate(ran):
        keep = Keep()
        blocks.run_job(here, job, keep)
        names = named(keep.blob, keep.compress, here.nn)
        assert not [m for m in names if not any(m == a or a.endswith(".") and m.startswith(a) for a in allowed)]
        (folder / f"{n}-{job.kind}.request").write_bytes(bytes([keep.compress]) + keep.blob)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    server = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ndif.py"), str(tiny_folder), str(folder), json.dumps(sorted(allowed))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert server.returncode == 0, server.stderr[-4000:]
    for n, (job, result) in enumerate(ran):
        assert equal(torch.load(folder / f"{n}-{job.kind}.result")["out"], result), job.kind


def equal(a, b) -> bool:
    """Two results the same, tensor for tensor (dicts, tuples and lists of them)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def test_the_simulation_runs_the_unpacked_copies_of_the_shipped_functions_not_these(tiny_tokenizer):
    from lens.models import exact
    from lens.reads import intrace, reduce
    from tests.conftest import random_model

    here = remote.simulated(random_model("llama", tiny_tokenizer))
    called = []
    sys.setprofile(lambda frame, event, arg: called.append(frame.f_code) if event == "call" else None)
    try:
        here.grid("The capital of Germany is")
    finally:
        sys.setprofile(None)
    originals = [intrace.grid_figures.__code__, exact.exact_logits.__code__, reduce.top1.__code__]
    assert not [code for code in called if any(code is original for original in originals)]  # (== is by value)
    assert {"grid_figures", "exact_logits", "top1"} <= {code.co_name for code in called}
