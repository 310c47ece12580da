"""Published lenses (lens/lenses/published.py) and the findings' preference for them (findings/model_findings.py
`lens_for`), offline: a folder in tuned-lens's published layout, written here from a tiny random model, loads
(from $LENS_PUBLISHED_DIR or from the Hugging Face cache as `hf_hub_download` lays it out) and is preferred over
training, reading as its saved params say; a named lens that is not here falls back to training with a one-line
note; a broken copy or a lens for another model is refused in one line; `lens download` asks the Hub for each
named lens where models.toml says and, offline, says in one line what it could not fetch and goes on."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import findings.model_findings as model_findings
import lens.lenses.train_tuned as train
from lens.cli import main
from lens.errors import LensError
from lens.lenses import published as published_lenses
from lens.lenses.jacobian import published_entry
from lens.lenses.published import PUBLISHED_DIR, fetch_published, local_folder
from lens.lenses.tuned import CONFIG, PARAMS
from lens.models.registry import HubModel, PublishedTuned, registry
from tests.conftest import random_hf_model, random_model

ENTRY = PublishedTuned(
    repo="someone/tuned-lenses",
    path="tuned-lens--tiny-llama--pile-val",
    trained="by someone on the Pile validation split",
)
REPO = "tiny-org/Tiny-Llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _bare_lens_command(monkeypatch):
    """The messages checked here name the bare `lens` command, as outside `./run` (which sets LENS_LAUNCHER to
    "./run lens"): the same messages whichever way the tests are started."""
    monkeypatch.delenv("LENS_LAUNCHER", raising=False)


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """No Hub, an empty Hugging Face cache, no published folder and a lens cache of each test's own."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv(PUBLISHED_DIR, raising=False)
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path / "lens-cache"))


@pytest.fixture(scope="module")
def llama(tiny_tokenizer):
    """A tiny random Llama that models.toml would list as a Hub model with a published tuned lens."""
    model = random_model("llama", tiny_tokenizer)
    return replace(model, spec=HubModel(name="tiny-llama", repo=REPO, title="random llama", tuned_lens=ENTRY))


def save_published(folder, model, base_model: str = REPO, seed: int = 3) -> torch.nn.ModuleList:
    """A folder as tuned-lens's `TunedLens.save` writes it for the model: its config keys, and `torch.save` of a
    ModuleList of `num_hidden_layers` Linear translators (random, so every index reads differently)."""
    n, d = model.n_layers, int(model.bridge.cfg.d_model)
    torch.manual_seed(seed)
    translators = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(n)])
    for t in translators:
        torch.nn.init.normal_(t.weight, std=0.3)
        torch.nn.init.normal_(t.bias, std=0.3)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(translators.state_dict(), folder / PARAMS)
    config = {
        "base_model_name_or_path": base_model,
        "d_model": d,
        "num_hidden_layers": n,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": "x",
        "lens_type": "linear_tuned_lens",
    }
    (folder / CONFIG).write_text(json.dumps(config))
    return translators


@pytest.fixture
def no_training(monkeypatch):
    """lens_for may not train: any call fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("lens_for trained a tuned lens where a published one is here")

    monkeypatch.setattr(published_lenses, "train_tuned", refuse)


def test_a_published_folder_is_preferred_over_training_and_reads_as_its_saved_params(
    llama, tmp_path, monkeypatch, no_training
):
    translators = save_published(tmp_path / "published" / ENTRY.repo / ENTRY.path, llama)
    monkeypatch.setenv(PUBLISHED_DIR, str(tmp_path / "published"))
    lens = model_findings.lens_for(llama, "tuned")
    assert lens.source == (
        "published: someone/tuned-lenses/tuned-lens--tiny-llama--pile-val (tuned-lens, "
        "KL-trained; by someone on the Pile validation split)"
    )
    twin = random_hf_model("llama", llama.tokenizer)  # the same weights (seed 0), no bridge around them
    torch.manual_seed(1)
    resid = torch.randn(3, llama.n_layers, int(llama.bridge.cfg.d_model))
    got = lens.block_logits(llama, resid)
    with torch.no_grad():
        for i in range(llama.n_layers):  # block i's output is tuned-lens's hidden_states[i + 1]: translator i + 1
            h = resid[:, i]
            if i < llama.n_layers - 1:
                t = translators[i + 1]
                h = h + h @ t.weight.T + t.bias
            torch.testing.assert_close(got[:, i], twin.lm_head(twin.model.norm(h)), atol=1e-4, rtol=1e-4)


def hf_cache_copy(tmp_path, model, entry: PublishedTuned, commit: str = COMMIT) -> None:
    """The lens as `hf_hub_download` leaves it in the Hugging Face cache: snapshots/<commit>/<path>/, and
    refs/main naming that commit."""
    kind = {"model": "models", "space": "spaces"}[entry.repo_type]
    repo_folder = tmp_path / "hf-cache" / f"{kind}--{entry.repo.replace('/', '--')}"
    save_published(repo_folder / "snapshots" / commit / entry.path, model)
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)


@pytest.mark.parametrize("repo_type", ["model", "space"])
def test_a_published_lens_in_the_hugging_face_cache_is_found_offline_at_its_revision(
    llama, tmp_path, repo_type, no_training
):
    entry = replace(ENTRY, repo_type=repo_type)
    assert local_folder(entry) is None
    hf_cache_copy(tmp_path, llama, entry)
    assert (
        local_folder(entry)
        == tmp_path / "hf-cache" / f"{repo_type}s--someone--tuned-lenses" / "snapshots" / COMMIT / entry.path
    )
    assert local_folder(replace(entry, revision=COMMIT)) == local_folder(entry)
    assert local_folder(replace(entry, revision="f" * 40)) is None  # another commit than models.toml pins
    lens = model_findings.lens_for(replace(llama, spec=replace(llama.spec, tuned_lens=entry)), "tuned")
    assert lens.source.startswith("published: someone/tuned-lenses/")


def test_a_named_lens_that_is_not_here_falls_back_to_training_with_a_one_line_note(llama, monkeypatch, capsys):
    trained = []
    real = train.train_tuned

    def small(model, say=None):
        trained.append(model.name)
        return real(model, tokens=512, say=say)

    monkeypatch.setattr(published_lenses, "train_tuned", small)
    lens = model_findings.lens_for(llama, "tuned")
    assert trained == ["tiny-llama"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "published" in line]
    assert notes == [
        f"tiny-llama's published tuned lens ({ENTRY.where}) is not here: training one here instead "
        "(fetch it with `lens download tiny-llama`)"
    ]
    assert lens.source.startswith(f"trained here: {train.RECIPE}, ") and " tokens of " in lens.source


def broken_copies(root, model) -> dict[str, str]:
    """Published copies that are here but unusable, each with what the refusal says."""
    cases = {}
    save_published(root / "cut", model)
    data = (root / "cut" / PARAMS).read_bytes()
    (root / "cut" / PARAMS).write_bytes(data[: len(data) // 2])
    cases["cut"] = "cannot be read"
    save_published(root / "no-params", model)
    (root / "no-params" / PARAMS).unlink()
    cases["no-params"] = "has no params.pt"
    save_published(root / "bad-config", model)
    (root / "bad-config" / CONFIG).write_text("{not json")
    cases["bad-config"] = "is not a tuned lens's config"
    save_published(root / "short", model)
    state = torch.load(root / "short" / PARAMS)
    del state["2.bias"]
    torch.save(state, root / "short" / PARAMS)
    cases["short"] = "translator 2's bias is missing"
    save_published(root / "v0.3", model, base_model="tiny-org/Tiny-Llama-v0.3")  # same shape, other weights
    cases["v0.3"] = (
        r"was trained for tiny-org/Tiny-Llama-v0.3, not tiny-llama \(tiny-org/Tiny-Llama\): name a lens "
        "for tiny-org/Tiny-Llama in models.toml"
    )
    return cases


def test_a_broken_copy_or_a_lens_for_other_weights_is_refused_in_one_line_and_nothing_is_trained(
    llama, tmp_path, monkeypatch, no_training
):
    root = tmp_path / "published" / ENTRY.repo
    monkeypatch.setenv(PUBLISHED_DIR, str(tmp_path / "published"))
    for path, message in broken_copies(root, llama).items():
        model = replace(llama, spec=replace(llama.spec, tuned_lens=replace(ENTRY, path=path)))
        with pytest.raises(LensError, match=message) as error:
            model_findings.lens_for(model, "tuned")
        assert "\n" not in str(error.value), path


def test_a_lens_trained_from_a_local_copy_of_the_same_repo_is_not_taken_for_another_models(
    llama, tmp_path, monkeypatch, no_training
):
    save_published(tmp_path / "published" / ENTRY.repo / ENTRY.path, llama, base_model="/scratch/hf/Tiny-Llama/")
    monkeypatch.setenv(PUBLISHED_DIR, str(tmp_path / "published"))
    assert model_findings.lens_for(llama, "tuned").source.startswith("published: ")


def spy_on_the_hub(monkeypatch) -> list[tuple[tuple, dict]]:
    """Every `hf_hub_download` call, passed on to the real one (offline here, so it raises as without network)."""
    import huggingface_hub

    calls, real = [], huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    return calls


def test_fetching_asks_the_hub_where_models_toml_says_and_offline_says_what_it_missed_in_one_line(monkeypatch):
    calls = spy_on_the_hub(monkeypatch)
    spec = registry()["qwen3"]
    line = fetch_published(spec)
    assert line == (
        f"qwen3: could not fetch its tuned lens ({spec.tuned_lens.where}) and its Jacobian lens "
        f"({spec.jacobian_lens}) (no network, or HF_HUB_OFFLINE=1 is set); the findings train its tuned "
        "lens here and skip its Jacobian-lens verdicts meanwhile: run `lens download qwen3` again to "
        "fetch it"
    )
    repo, filename, revision = published_entry(spec.jacobian_lens)
    assert calls == [
        ((spec.tuned_lens.repo, CONFIG), dict(subfolder=spec.tuned_lens.path, repo_type="model", revision=None)),
        ((), dict(repo_id=repo, filename=filename, revision=revision)),
    ]
    calls.clear()
    llama3 = registry()["llama3"]
    assert "could not fetch its tuned lens" in fetch_published(llama3)
    assert calls == [
        (
            (llama3.tuned_lens.repo, CONFIG),
            dict(subfolder="lens/meta-llama/Meta-Llama-3-8B", repo_type="space", revision=llama3.tuned_lens.revision),
        )
    ]


def test_a_fetched_lens_is_not_fetched_again_and_counts_as_here(llama, tmp_path, monkeypatch):
    hf_cache_copy(tmp_path, llama, ENTRY)
    spec = HubModel(name="tiny-llama", repo=REPO, tuned_lens=ENTRY)
    assert fetch_published(spec) is None  # offline, from the cache: nothing missed
    assert fetch_published(HubModel(name="other", repo="org/other")) == (
        "other: models.toml names no published lens for it (the findings train its tuned lens here)"
    )
    assert fetch_published(HubModel(name="other", repo="org/other"), quiet=True) is None


def test_download_fetches_each_models_lenses_and_goes_on_offline(capsys, monkeypatch):
    fetched = []
    monkeypatch.setattr(
        "lens.models.fetch.fetch_from_hub", lambda repo, quiet: fetched.append(repo)
    )  # the weights: here
    status = main(["download", "llama3", "mistral", "qwen3"])
    out, err = capsys.readouterr()
    assert status == 0 and out == "" and fetched == [registry()[n].repo for n in ("llama3", "mistral", "qwen3")]
    lines = err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["llama3", "mistral", "qwen3"]
    assert lines[0].startswith("lens: llama3: could not fetch its tuned lens (AlignmentResearch/tuned-lens/lens/")
    assert lines[1] == (
        "lens: mistral: models.toml names no published lens for it (the findings train its tuned lens here)"
    )
    assert lines[2].startswith("lens: qwen3: could not fetch its tuned lens (") and "and its Jacobian lens" in lines[2]
