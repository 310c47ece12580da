"""TransformerLens's Jacobian lens as an instrument: an artefact in TransformerLens's format loads and reads block l
as the final norm, unembedding and soft-cap of J_l h (by hand through a plain transformers twin, and by
TransformerLens's own readout of a lens it fitted and saved), the last block stays the output, bad artefacts are
refused in one line, and the published lenses are looked up in TransformerLens's registry, offline saying so."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from lens.cli import main
from lens.errors import LensError, NotRemote
from lens.lenses.jacobian import jacobian_lens, published_entry, published_names
from lens.lenses.lenses import JacobianLens
from lens.lenses.registry import lens_for
from lens.reads.trace import collect, read
from lens.remote import simulated
from tests.conftest import random_hf_model, random_model
from tests.reference import assert_the_output_at_the_last_block

PROMPTS = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]
CORPUS = [
    "Berlin is the capital of Germany. Rome is the capital of Italy.",
    "Question: What is the capital of France? Answer: Paris",
    "The capital of Germany is Berlin. The capital of France is Paris.",
]


@pytest.fixture(autouse=True)
def _bare_lens_command(monkeypatch):
    """The messages checked here name the bare `lens` command, as outside `./run` (which sets LENS_LAUNCHER to
    "./run lens"): the same messages whichever way the tests are started."""
    monkeypatch.delenv("LENS_LAUNCHER", raising=False)


@pytest.fixture(scope="module")
def llama(tiny_tokenizer):
    return random_model("llama", tiny_tokenizer)


@pytest.fixture(scope="module")
def gemma2(tiny_tokenizer):
    """Soft-capped at 2.0: the cap changes the logits far beyond the tolerances below."""
    return random_model("gemma2", tiny_tokenizer)


def save_like_the_reference(path, n_layers: int, d_model: int, seed: int = 0, **changes) -> dict[int, torch.Tensor]:
    """An artefact as the reference implementation (and TransformerLens's `save`) writes it: `torch.save` of
    {"J": {block: float16 (d, d)}, "n_prompts", "source_layers", "d_model"}, one matrix per block but the last
    (random here, near the identity, so every block reads differently); `changes` override the payload."""
    g = torch.Generator().manual_seed(seed)
    matrices = {
        layer: (torch.eye(d_model) + 0.3 * torch.randn(d_model, d_model, generator=g)).half()
        for layer in range(n_layers - 1)
    }
    payload = {"J": matrices, "n_prompts": 7, "source_layers": sorted(matrices), "d_model": d_model} | changes
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return {layer: matrix.float() for layer, matrix in matrices.items()}


def shape_of(model) -> tuple[int, int]:
    return model.n_layers, int(model.bridge.cfg.d_model)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_an_artefact_reads_as_the_final_norm_and_unembedding_of_J_h_and_the_last_block_as_it_is(
    request, tmp_path, arch
):
    model = request.getfixturevalue(arch)
    matrices = save_like_the_reference(tmp_path / "lens.pt", *shape_of(model))
    lens = jacobian_lens(model, tmp_path)  # a folder with lens.pt, as TransformerLens's from_pretrained reads it
    assert isinstance(lens, JacobianLens) and lens.name == "jacobian" and lens.source == str(tmp_path / "lens.pt")
    twin = random_hf_model(arch, model.tokenizer)  # the same weights (seed 0), no bridge around them
    cap = twin.config.final_logit_softcapping if arch == "gemma2" else None
    torch.manual_seed(1)
    resid = torch.randn(3, *shape_of(model))
    got = lens.block_logits(model, resid)
    with torch.no_grad():
        for layer in range(model.n_layers):
            h = resid[:, layer]
            if layer < model.n_layers - 1:
                h = h @ matrices[layer].T  # J_l h, row vectors
            expected = twin.lm_head(twin.model.norm(h))
            if cap:
                expected = torch.tanh(expected / cap) * cap
            torch.testing.assert_close(got[:, layer], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_a_lens_transformer_lens_fitted_and_saved_reads_here_as_transformer_lens_reads_it(request, tmp_path, arch):
    """The second implementation is TransformerLens's own: `JacobianLens.fit` on the bridge, `save`, then its
    `readout` (a forward pass of its own) against this lens on the residuals `collect` kept."""
    from transformer_lens.tools.analysis import JacobianLens as Artefact

    model = request.getfixturevalue(arch)
    fitted = Artefact.fit(model.bridge, CORPUS, corpus="tests", skip_first_positions=2, show_progress=False)
    fitted.save(str(tmp_path / "fitted.pt"), dtype=torch.float32)
    lens = jacobian_lens(model, tmp_path / "fitted.pt")
    residuals = collect(model, PROMPTS)
    ours = lens.block_logits(model, residuals.resid)
    for row, prompt in enumerate(PROMPTS):
        ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
        theirs = fitted.readout(model.bridge, ids, positions=[-1], return_full_logits=True)
        for layer in range(model.n_layers):
            torch.testing.assert_close(ours[row, layer], theirs.lens_logits[layer][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours[row, -1], residuals.output_logits[row], atol=1e-4, rtol=1e-4)
    jacobian = read(model, residuals, lens=lens)
    assert {j.lens for j in jacobian} == {"jacobian"}
    assert_the_output_at_the_last_block(jacobian, read(model, residuals), moved=1e-4)


def test_the_last_block_is_the_output_under_the_jacobian_lens_for_every_architecture(tiny_model, tmp_path):
    save_like_the_reference(tmp_path / "lens.pt", *shape_of(tiny_model))
    lens = jacobian_lens(tiny_model, tmp_path / "lens.pt")
    assert_the_output_at_the_last_block(read(tiny_model, collect(tiny_model, PROMPTS), lens=lens))


def test_the_jacobian_lens_reads_blocks_only_as_a_whole(llama, tmp_path):
    save_like_the_reference(tmp_path / "lens.pt", *shape_of(llama))
    lens = jacobian_lens(llama, tmp_path / "lens.pt")
    d_model = shape_of(llama)[1]
    with pytest.raises(ValueError, match="block_logits"):
        lens.logits(llama, torch.zeros(2, d_model))
    with pytest.raises(ValueError, match="reads 4 blocks of width 64"):
        lens.block_logits(llama, torch.zeros(2, 3, d_model))
    # All 4 blocks (SIZES' depth) read whole: one row of logits over the tokenizer's vocabulary per block.
    assert lens.block_logits(llama, torch.zeros(2, 4, d_model)).shape == (2, 4, len(llama.tokenizer))


def test_a_fit_checkpoint_loads_as_its_mean(llama, tmp_path):
    """The reference's fit checkpoints (running sums over `n_done` prompts) load too: TransformerLens's `load`."""
    n_layers, d_model = shape_of(llama)
    matrices = save_like_the_reference(tmp_path / "a.pt", n_layers, d_model)
    torch.save(
        {
            "jacobian_sum": {layer: 4 * m for layer, m in matrices.items()},
            "n_done": 4,
            "next_idx": 4,
            "source_layers": sorted(matrices),
            "target_layer": n_layers - 1,
            "skip_first": 16,
        },
        tmp_path / "checkpoint.pt",
    )
    resid = torch.randn(2, n_layers, d_model)
    from_checkpoint = jacobian_lens(llama, tmp_path / "checkpoint.pt").block_logits(llama, resid)
    from_artefact = jacobian_lens(llama, tmp_path / "a.pt").block_logits(llama, resid)
    torch.testing.assert_close(from_checkpoint, from_artefact, atol=1e-5, rtol=1e-5)


def broken_artefacts(folder, n_layers: int, d_model: int) -> dict[str, str]:
    """Artefacts that must be refused, each with the words its one line says."""
    save_like_the_reference(folder / "cut.pt", n_layers, d_model)
    data = (folder / "cut.pt").read_bytes()
    (folder / "cut.pt").write_bytes(data[: len(data) // 2])
    (folder / "text.pt").write_text("not a tensor file")
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.pt")
    save_like_the_reference(folder / "narrow.pt", n_layers, 32)
    save_like_the_reference(folder / "short.pt", n_layers - 1, d_model)
    matrices = save_like_the_reference(folder / "last.pt", n_layers + 1, d_model)  # one for the last block too
    nan = {layer: m.clone() for layer, m in matrices.items() if layer < n_layers - 1}
    nan[1][0, 0] = float("nan")
    torch.save({"J": nan, "n_prompts": 1, "source_layers": sorted(nan), "d_model": d_model}, folder / "nan.pt")
    save_like_the_reference(folder / "other.pt", n_layers, d_model, metadata={"model_name": "google/gemma-2-9b"})
    save_like_the_reference(folder / "target.pt", n_layers, d_model, metadata={"target_layer": n_layers - 2})
    (folder / "two").mkdir()
    for name in ("a.pt", "b.pt"):
        save_like_the_reference(folder / "two" / name, n_layers, d_model)
    return {
        "cut.pt": "is not a Jacobian lens TransformerLens can read",
        "text.pt": "is not a Jacobian lens TransformerLens can read",
        "foreign.pt": "is not a Jacobian lens TransformerLens can read .*'J' key",
        "narrow.pt": "is for width 32, tiny-llama has width 64",
        "short.pt": r"has matrices for blocks 0\.\.1 \(2\), tiny-llama needs one for each of blocks 0\.\.2",
        "last.pt": r"has matrices for blocks 0\.\.3 \(4\), .*\(and none for its last, 3\)",
        "nan.pt": "has non-finite entries at blocks 1",
        "other.pt": "was fitted for google/gemma-2-9b, not tiny-llama",
        "target.pt": "TransformerLens refuses .* lens targets layer 2",
        "two": "holds 2 .pt files and no lens.pt",
        "nowhere": "no Jacobian lens at",
    }


def test_malformed_artefacts_are_refused_in_one_line(llama, tmp_path):
    for name, message in broken_artefacts(tmp_path, *shape_of(llama)).items():
        with pytest.raises(LensError, match=message) as error:
            jacobian_lens(llama, tmp_path / name)
        assert "\n" not in str(error.value), name


def test_the_published_lenses_are_transformer_lens_registrys_and_a_model_with_none_says_so(llama):
    names = published_names()
    assert {"gemma-2-9b", "llama3.1-8b", "qwen3-8b"} <= set(names)
    repo, filename, revision = published_entry("Qwen/Qwen3-8B")  # a Hub id resolves through the aliases
    assert repo == "neuronpedia/jacobian-lens" and filename.startswith("qwen3-8b/") and len(revision) == 40
    assert published_entry("meta-llama/Meta-Llama-3-8B") is None  # Llama 3, not 3.1: none published
    with pytest.raises(
        LensError,
        match=rf"^TransformerLens publishes no Jacobian lens for tiny-llama \(it does for "
        rf"{len(names)} models, e.g. .*\): name one with 'hub:<name>' or give a file$",
    ):
        jacobian_lens(llama)
    with pytest.raises(LensError, match="publishes no Jacobian lens for nobody/nothing"):
        jacobian_lens(llama, "hub:nobody/nothing")
    with pytest.raises(NotRemote, match="^the jacobian lens is not read on NDIF: its matrices are applied here"):
        lens_for(simulated(llama), "jacobian")


def test_the_published_lens_is_fetched_from_the_pinned_commit_and_offline_says_so(llama, tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    repo, filename, revision = published_entry("gemma-2-9b")
    with pytest.raises(LensError, match=r"^cannot reach the Hugging Face Hub for the Jacobian lens of gemma-2-9b"):
        jacobian_lens(llama, "hub:gemma-2-9b")
    with pytest.raises(
        LensError,
        match=r"^TransformerLens's Jacobian lens for google/gemma-2-9b is not in the "
        r"Hugging Face cache: fetch it once \(0\.0 GB\) with --jacobian-lens hub$",
    ):
        jacobian_lens(replace(llama, spec=SimpleNamespace(name="gemma2", repo="google/gemma-2-9b")))
    assert calls == [
        dict(repo_id=repo, filename=filename, revision=revision, local_files_only=False),
        dict(repo_id=repo, filename=filename, revision=revision, local_files_only=True),
    ]

    def fetched(**kwargs):  # the Hub answering: the file as it would land in the Hugging Face cache
        save_like_the_reference(tmp_path / "hub" / kwargs["filename"], *shape_of(llama))
        return str(tmp_path / "hub" / kwargs["filename"])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fetched)
    lens = jacobian_lens(llama, "hub:qwen3-8b")
    assert lens.source == "hub:qwen3-8b" and lens.n_layers == llama.n_layers


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_traces_with_the_jacobian_lens_and_refuses_in_one_line(capsys, tiny_folder, tmp_path):
    save_like_the_reference(tmp_path / "lens.pt", 4, 64)
    base = ("trace", str(tiny_folder), PROMPTS[0], "--device", "cpu")
    status, out, _ = run(capsys, *base, "--lens", "jacobian", "--jacobian-lens", str(tmp_path / "lens.pt"))
    assert status == 0 and out.splitlines()[0].endswith("(jacobian lens)")
    status, out, _ = run(capsys, *base, "--lens", "jacobian", "--jacobian-lens", str(tmp_path), "--json")
    data = json.loads(out)
    assert status == 0 and data["layers"][-1]["kl_to_output"] == pytest.approx(0, abs=1e-5)
    status, out, err = run(capsys, *base, "--lens", "jacobian")
    assert status == 2 and out == "" and err.count("\n") == 1 and "publishes no Jacobian lens" in err
    status, _, err = run(capsys, *base, "--jacobian-lens", str(tmp_path))
    assert status == 2 and "--jacobian-lens goes with --lens jacobian" in err
    save_like_the_reference(tmp_path / "narrow" / "lens.pt", 4, 32)
    status, out, err = run(capsys, *base, "--lens", "jacobian", "--jacobian-lens", str(tmp_path / "narrow"))
    assert status == 2 and out == "" and err.count("\n") == 1 and "is for width 32" in err


def test_the_lens_models_toml_names_is_the_models_default_and_its_name_is_accepted_as_the_model(
    llama, tmp_path, monkeypatch
):
    """models.toml's `jacobian_lens` (a registry name) is what the findings look for, in the cache only, saying
    `lens download` fetches it; an artefact fitted under that name reads for the model it is named for, and no
    other name does."""
    import huggingface_hub.constants

    from lens.models.registry import HubModel

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    named = replace(llama, spec=HubModel(name="tiny", repo="org/tiny", jacobian_lens="qwen3-8b"))
    with pytest.raises(
        LensError,
        match=r"^TransformerLens's Jacobian lens for qwen3-8b is not in the Hugging Face "
        r"cache: fetch it once \(0\.0 GB\) with `lens download tiny`$",
    ):
        jacobian_lens(named)
    save_like_the_reference(tmp_path / "named.pt", *shape_of(llama), metadata={"model_name": "qwen3-8b"})
    assert jacobian_lens(named, tmp_path / "named.pt").n_layers == llama.n_layers
    with pytest.raises(LensError, match="was fitted for qwen3-8b, not tiny-llama"):
        jacobian_lens(llama, tmp_path / "named.pt")
