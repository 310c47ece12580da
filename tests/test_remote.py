"""NDIF, as its server answers: `--remote` goes ahead only for a model NDIF runs now for an ordinary API key (a
HOT, RUNNING, dedicated deployment of the model key nnsight sends), and every refusal or failure is one line
naming its cause (the exception a server traceback ends with, the Hub, an nnsight NDIF no longer accepts)."""

from __future__ import annotations

import importlib

import httpx
import pytest
import torch

from lens import remote
from lens.errors import LensError
from lens.registry import HubModel
from tests import ndif

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

    monkeypatch.setattr(remote, "_meta_model", meta_model)

    def connect(repo: str, canonical: str, *entries: ndif.Entry) -> remote.RemoteModel:
        payload = ndif.status(*entries, *RUNNING_ELSEWHERE)
        monkeypatch.setattr(httpx, "get", lambda url, **kw: httpx.Response(200, json=payload,
                                                                           request=httpx.Request("GET", url)))
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
        ([ndif.hot("test/m", dedicated=False)],
         'NDIF runs test/m now but not as a dedicated model, which it refuses to an ordinary API key ("Model is not '
         'dedicated and hotswapping is not supported for this API key"): see https://nnsight.net/status/ for when '
         "it is scheduled, or set NDIF_HOTSWAPPING=1 if your key has hotswapping access"),
        ([ndif.hot("test/m", state="DEPLOYING")],
         "NDIF lists test/m but it is not running now (HOT, DEPLOYING): try again in a few minutes"),
        ([ndif.hot("test/m", state="UNHEALTHY")],
         "NDIF lists test/m but it is not running now (HOT, UNHEALTHY): try again later (https://discuss.ndif.us)"),
        ([ndif.warm("test/m")],
         "NDIF lists test/m but it is not running now (WARM): see https://nnsight.net/status/ for when it is "
         "scheduled (running now: other/served)"),
        ([ndif.cold("test/m")],
         "NDIF lists test/m but it is not running now (COLD): see https://nnsight.net/status/ for when it is "
         "scheduled (running now: other/served)"),
        ([ndif.hot("test/m", task="text-classification")],
         "NDIF runs test/m only as TransformersModel for text-classification, not as TransformersModel for "
         "text-generation that nnsight sends: run it here instead"),
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
    assert str(refused.value) == ("NDIF does not host test/m (the Hub's name for old-org/m): only the models NDIF "
                                  "runs now run there (now: old-org/m, other/served)")


def test_a_key_with_hotswapping_access_is_not_held_to_what_runs_now(connect_to, monkeypatch):
    monkeypatch.setenv("NDIF_HOTSWAPPING", "1")  # NDIF deploys a model such a key asks for
    assert connect_to("test/m", "test/m", ndif.cold("test/m")).repo == "test/m"


# ---- what a failed run says ------------------------------------------------------------------------------------


def an_ndif_model(repo: str = "test/m") -> remote.RemoteModel:
    return remote.RemoteModel(spec=HubModel(name="m", repo=repo), repo=repo, nn=None, tokenizer=None, n_layers=1,
                              n_ctx=1, softcap=None, host=HOST)


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
    line = str(an_ndif_model()._explain(RemoteError(description)))
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
    line = str(an_ndif_model()._explain(RemoteError(description)))
    assert line == "NDIF could not run test/m: ValueError: the request names a module the model does not have"


def test_an_nnsight_older_than_ndifs_is_told_with_both_versions():
    from nnsight.intervention.backends.remote import RemoteError

    line = str(an_ndif_model()._explain(RemoteError(ndif.too_old("0.8.1", "0.9.0"))))
    assert line == ("NDIF needs nnsight >= 0.9.0 (this environment has 0.8.1): try it with "
                    "`./run upgrade-check nnsight==0.9.0`, then keep it with `./run upgrade-check --take`")


def test_a_hub_failure_as_the_trace_starts_is_told_as_the_hubs(tiny_tokenizer, monkeypatch):
    # nnsight names the model to NDIF by the Hub's spelling of its repo id, asked of the Hub as the trace starts.
    import huggingface_hub.constants
    from nnsight import CONFIG

    from lens.backends import nnsight_model
    from lens.trace import trace
    from tests.conftest import random_model
    from tests.test_backends import _closed_port

    model = random_model("llama", tiny_tokenizer)
    model.hf_model.name_or_path = "test/hubless"
    monkeypatch.delitem(importlib.import_module("nnsight.modeling.huggingface")._ID_CACHE, "test/hubless",
                        raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(CONFIG.API, "HOST", host)
    monkeypatch.setattr(CONFIG.API, "APIKEY", "dummy")
    far = remote.RemoteModel(spec=HubModel(name="hubless", repo="test/hubless"), repo="test/hubless",
                             nn=nnsight_model(model), tokenizer=model.tokenizer, n_layers=model.n_layers,
                             n_ctx=model.n_ctx, softcap=None, host=host)
    with pytest.raises(LensError, match=r"^cannot reach the Hugging Face Hub to name test/hubless to NDIF \(.+\): "
                                        r"check the network connection$"):
        trace(far, ["Rome is the capital of"], [" Italy"], backend="nnsight")
