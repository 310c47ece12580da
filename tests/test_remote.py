"""NDIF, as its server answers: `--remote` goes ahead only for a model NDIF runs now for an ordinary API key (a
HOT, RUNNING, dedicated deployment of the model key nnsight sends), and every refusal is one line naming its
cause."""

from __future__ import annotations

import importlib

import httpx
import pytest

from lens import remote
from lens.errors import LensError
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
         "text-generation that --remote sends: drop --remote to run it here"),
        ([], "NDIF does not host test/m: --remote runs only the models NDIF runs now (now: other/served)"),
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
    assert str(refused.value) == ("NDIF does not host test/m (the Hub's name for old-org/m): --remote runs only the "
                                  "models NDIF runs now (now: old-org/m, other/served)")


def test_a_key_with_hotswapping_access_is_not_held_to_what_runs_now(connect_to, monkeypatch):
    monkeypatch.setenv("NDIF_HOTSWAPPING", "1")  # NDIF deploys a model such a key asks for
    assert connect_to("test/m", "test/m", ndif.cold("test/m")).repo == "test/m"
