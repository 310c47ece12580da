"""The tuned lens as an instrument: tuned-lens's published format loads and reads as h + A h + b through the
final norm and unembedding, the last block stays exact, a trained lens finds an answer rotated away from the
unembedding, bad lenses are refused in one line, a training is kept and reused, and on held-out text the
trained lens is closer to SmolLM2's output than the logit lens at every block but the last."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

import lens.lenses.train_tuned as train
from lens.cli import main
from lens.errors import LensError
from lens.lenses import tuned_held_out, tuned_text
from lens.lenses.lenses import EXACT, TunedLens
from lens.lenses.tuned import CONFIG, PARAMS, read_folder, trained_folder, tuned_lens
from lens.reads.trace import collect, read
from tests.conftest import random_hf_model, random_model
from tests.reference import assert_the_output_at_the_last_block

PROMPTS = ["The capital of Germany is", "Question: What is the capital of France? Answer:"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch, request):
    """A lens cache of each test's own (the real one for tests that load an embedded model: their lens is
    trained once and kept, as a findings run would keep it)."""
    if "smollm2" not in request.fixturenames:
        monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def llama(tiny_tokenizer):
    return random_model("llama", tiny_tokenizer)


def save_like_tuned_lens(folder, model, seed: int = 0, bias: bool = True, n_layers=None, d_model=None):
    """A folder as tuned-lens's `TunedLens.save` writes it: its config keys, and `torch.save` of a ModuleList of
    `num_hidden_layers` Linear translators (random here, so every index reads differently)."""
    n = model.n_layers if n_layers is None else n_layers
    d = int(model.bridge.cfg.d_model) if d_model is None else d_model
    torch.manual_seed(seed)
    translators = torch.nn.ModuleList([torch.nn.Linear(d, d, bias=bias) for _ in range(n)])
    for t in translators:
        torch.nn.init.normal_(t.weight, std=0.3)
        if bias:
            torch.nn.init.normal_(t.bias, std=0.3)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(translators.state_dict(), folder / PARAMS)
    config = {
        "base_model_name_or_path": "tiny",
        "d_model": d,
        "num_hidden_layers": n,
        "bias": bias,
        "base_model_revision": None,
        "unembed_hash": "x",
        "lens_type": "linear_tuned_lens",
    }
    (folder / CONFIG).write_text(json.dumps(config))
    return translators


@pytest.mark.parametrize("bias", [True, False])
def test_a_published_folder_reads_as_h_plus_Ah_plus_b_through_the_final_norm_and_unembedding(
    llama, tmp_path, tiny_tokenizer, bias
):
    translators = save_like_tuned_lens(tmp_path / "lens", llama, bias=bias)
    lens = tuned_lens(llama, tmp_path / "lens")
    twin = random_hf_model("llama", llama.tokenizer)  # the same weights (seed 0), no bridge around them
    torch.manual_seed(1)
    resid = torch.randn(3, llama.n_layers, int(llama.bridge.cfg.d_model))
    got = lens.block_logits(llama, resid)
    with torch.no_grad():
        for i in range(llama.n_layers):
            h = resid[:, i]
            if i < llama.n_layers - 1:  # block i's output is transformers' hidden_states[i + 1]: translator i + 1
                t = translators[i + 1]
                h = h + h @ t.weight.T + (t.bias if bias else 0)
            expected = twin.lm_head(twin.model.norm(h))
            torch.testing.assert_close(got[:, i], expected, atol=1e-4, rtol=1e-4)


def test_block_i_is_transformers_hidden_state_i_plus_one_as_tuned_lens_trains_on(llama, tiny_tokenizer):
    """tuned-lens's translator i reads `hidden_states[i]`; the lens here reads block i's output through translator
    i + 1: the two are the same vector for every block but the last (transformers' last is after the norm)."""
    twin = random_hf_model("llama", llama.tokenizer)  # the same weights (seed 0), no bridge around them
    residuals = collect(llama, PROMPTS[:1])
    ids = llama.tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = twin(ids, output_hidden_states=True).hidden_states
    assert len(hidden) == llama.n_layers + 1
    for i in range(llama.n_layers - 1):
        torch.testing.assert_close(residuals.resid[0, i], hidden[i + 1][0, -1], atol=1e-5, rtol=1e-5)


def random_tuned(model, seed: int = 0) -> TunedLens:
    n, d = model.n_layers, int(model.bridge.cfg.d_model)
    g = torch.Generator().manual_seed(seed)
    return TunedLens(weight=torch.randn(n - 1, d, d, generator=g) * 0.3, bias=torch.randn(n - 1, d, generator=g))


def test_the_last_block_is_the_output_under_the_tuned_lens_and_the_others_are_translated(tiny_model):
    lens = random_tuned(tiny_model)
    residuals = collect(tiny_model, PROMPTS)
    tuned = read(tiny_model, residuals, lens=lens)
    assert {t.lens for t in tuned} == {"tuned"}
    assert_the_output_at_the_last_block(tuned, read(tiny_model, residuals), moved=1e-3)


def test_the_tuned_lens_reads_blocks_only_as_a_whole(llama):
    lens = random_tuned(llama)
    with pytest.raises(ValueError, match="block_logits"):
        lens.logits(llama, torch.zeros(2, int(llama.bridge.cfg.d_model)))
    with pytest.raises(ValueError, match="reads 4 blocks"):
        lens.block_logits(llama, torch.zeros(2, 3, int(llama.bridge.cfg.d_model)))


def rotated_residuals(model, rotations, rows: int, seed: int) -> torch.Tensor:
    """Block outputs where the answer is the same at every block but rotated away from the unembedding: the last
    block's output y (drawn at random) and, at block i < last, 2 y R_i plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    d = int(model.bridge.cfg.d_model)
    y = torch.randn(rows, d, generator=g) * 3
    early = [2 * y @ r + 0.01 * torch.randn(rows, d, generator=g) for r in rotations]
    return torch.stack(early + [y], dim=1)


def settled(logits: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Per row, the first block from which the lens's top token is the output's at every later block."""
    same = logits.argmax(-1) == output.argmax(-1)[:, None]
    later_all = same.flip(1).cumprod(1).flip(1).bool()
    return later_all.float().argmax(1)


def test_a_trained_tuned_lens_reads_early_what_the_logit_lens_reads_only_at_the_last_block(llama):
    """The synthetic case: an answer linearly readable from block 0 on, rotated away from the unembedding."""
    n, d = llama.n_layers, int(llama.bridge.cfg.d_model)
    g = torch.Generator().manual_seed(5)
    rotations = [torch.linalg.qr(torch.randn(d, d, generator=g))[0] for _ in range(n - 1)]
    training = rotated_residuals(llama, rotations, 1024, seed=6)
    weight, bias = train.fit_translators(training.split(256))
    lens = TunedLens(weight=weight, bias=bias)
    held_out = rotated_residuals(llama, rotations, 256, seed=7)
    with torch.no_grad():
        output = EXACT.logits(llama, held_out[:, -1])
        exact, tuned = EXACT.block_logits(llama, held_out), lens.block_logits(llama, held_out)
    assert (settled(exact, output) == n - 1).float().mean() > 0.9  # the logit lens: only at the last block
    assert (settled(tuned, output) == 0).float().mean() > 0.9  # the tuned lens: from block 0 (the rest: near-ties)
    logp = torch.log_softmax(output, -1)[:, None]
    kl = {
        name: (logp.exp() * (logp - torch.log_softmax(x, -1))).sum(-1).mean(0)
        for name, x in (("exact", exact), ("tuned", tuned))
    }
    assert (kl["tuned"][:-1] < 0.05).all() and (kl["exact"][:-1] > 0.5).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"d_model": 32}, "is for 4 blocks of width 32, tiny-llama has 4 of width 64"),
        ({"n_layers": 6}, "is for 6 blocks of width 64, tiny-llama has 4 of width 64"),
    ],
)
def test_a_lens_for_another_shape_is_refused_in_one_line(llama, tmp_path, change, message):
    save_like_tuned_lens(tmp_path / "other", llama, **change)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(LensError, match=message) as error:
        tuned_lens(llama, tmp_path / "other")
    assert "\n" not in str(error.value) and "train-tuned tiny-llama" in str(error.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_broken_lens_folders_are_refused_in_one_line(llama, tmp_path):
    save_like_tuned_lens(tmp_path / "cut", llama)
    data = (tmp_path / "cut" / PARAMS).read_bytes()
    (tmp_path / "cut" / PARAMS).write_bytes(data[: len(data) // 2])
    save_like_tuned_lens(tmp_path / "short", llama)
    state = torch.load(tmp_path / "short" / PARAMS)
    del state["3.weight"]
    torch.save(state, tmp_path / "short" / PARAMS)
    (tmp_path / "empty").mkdir()
    cases = {
        "cut": "cannot be read",
        "short": "translator 3's weight is missing",
        "empty": "has no config.json",
        "nowhere": "no tuned lens folder at",
    }
    for name, message in cases.items():
        with pytest.raises(LensError, match=message) as error:
            tuned_lens(llama, tmp_path / name)
        assert "\n" not in str(error.value)


def test_no_lens_says_how_to_train_one(llama):
    with pytest.raises(LensError, match=r"^no tuned lens for tiny-llama: train one with `.*train-tuned tiny-llama`$"):
        tuned_lens(llama)


def test_the_published_lens_is_looked_up_on_the_hub_and_offline_says_so(llama, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    resource = "nobody/no-model-lens-tests-ask-for"
    with pytest.raises(LensError, match=f"cannot reach the Hugging Face Hub for the tuned lens of {resource}") as error:
        tuned_lens(llama, f"hub:{resource}")
    assert "\n" not in str(error.value)
    ((args, kwargs),) = calls
    assert args[:2] == ("AlignmentResearch/tuned-lens", "config.json")
    assert kwargs == {"subfolder": f"lens/{resource}", "repo_type": "space"}
    with pytest.raises(LensError, match="tiny-llama is no Hub model"):
        tuned_lens(llama, "hub")


def small_training(model, **options):
    return train.train_tuned(model, tokens=512, **options)


def test_a_training_is_kept_and_a_second_costs_nothing(llama, monkeypatch):
    said = []
    first = small_training(llama, say=said.append)
    assert not first.cached and first.tokens >= 512 and len(said) == 1 and "about" in said[0]
    assert json.loads((first.folder / CONFIG).read_text())["num_hidden_layers"] == llama.n_layers

    def no_forward(*args, **kwargs):
        raise AssertionError("a kept lens was trained again")

    monkeypatch.setattr(train, "block_outputs", no_forward)
    second = small_training(llama)
    assert second.cached and second.folder == first.folder
    torch.testing.assert_close(second.lens.weight, first.lens.weight)
    assert tuned_lens(llama).weight.shape == first.lens.weight.shape
    with pytest.raises(AssertionError, match="trained again"):  # another text is another lens
        train.train_tuned(
            llama, tuned_text.Corpus("other", tuple(f"paragraph {i} " * 40 for i in range(10))), tokens=512
        )


def test_an_interrupted_training_leaves_no_half_written_lens(llama, monkeypatch):
    first = small_training(llama)
    kept = (first.folder / PARAMS).read_bytes()
    real_save = torch.save

    def interrupted(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_training(llama, force=True)
    assert (first.folder / PARAMS).read_bytes() == kept  # the kept lens is as it was
    assert [p.name for p in first.folder.parent.iterdir()] == [first.folder.name]  # no partial folder left
    monkeypatch.setattr(torch, "save", real_save)
    folder = trained_folder(llama)
    shutil.rmtree(folder)
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_training(llama)
    assert list(folder.parent.iterdir()) == []
    with pytest.raises(LensError, match="no tuned lens for tiny-llama"):
        tuned_lens(llama)


def test_a_lens_trained_here_loads_as_a_published_one(llama):
    trained = small_training(llama)
    state = torch.load(trained.folder / PARAMS)
    assert sorted(state) == sorted(f"{i}.{p}" for i in range(llama.n_layers) for p in ("weight", "bias"))
    assert not state["0.weight"].any() and not state["0.bias"].any()  # the embeddings: not read here
    loaded = read_folder(trained.folder, llama)
    torch.testing.assert_close(loaded.weight, trained.lens.weight)
    torch.testing.assert_close(loaded.bias, trained.lens.bias)


def test_a_short_or_missing_text_is_refused(tmp_path):
    (tmp_path / "few.txt").write_text("one\n\ntwo\n\nthree")
    with pytest.raises(LensError, match="has 3 paragraphs: give at least 5"):
        tuned_text.file_corpus(tmp_path / "few.txt")
    with pytest.raises(LensError, match="cannot read"):
        tuned_text.file_corpus(tmp_path / "none.txt")


def test_the_default_corpus_holds_out_one_topic_in_five_and_is_not_about_the_findings():
    corpus = tuned_text.default_corpus()
    train_text, held = corpus.train, corpus.held_out
    assert len(held) > 20_000 and len(train_text) > 3 * len(held)
    held_topics = [p for i, p in enumerate(corpus.paragraphs) if i % 5 == 4]
    assert len(held_topics) == len(corpus.paragraphs) // 5 and not any(t in train_text for t in held_topics)
    for word in ("capital", "Berlin", "Paris", "Germany", "France", "war", "king"):
        assert not re.search(rf"\b{word}\b", train_text + held)  # "LATIN CAPITAL LETTER" is there


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_trains_then_traces_with_the_tuned_lens(capsys, tiny_folder):
    status, out, err = run(capsys, "trace", str(tiny_folder), PROMPTS[0], "--lens", "tuned", "--device", "cpu")
    assert status == 2 and out == "" and err.count("\n") == 1 and "train-tuned" in err
    status, out, err = run(capsys, "train-tuned", str(tiny_folder), "--tokens", "512", "--device", "cpu")
    assert status == 0 and "trained now" in out and "about" in err
    status, out, _ = run(capsys, "train-tuned", str(tiny_folder), "--tokens", "512", "--device", "cpu")
    assert status == 0 and "kept from an earlier training" in out
    status, out, _ = run(capsys, "trace", str(tiny_folder), PROMPTS[0], "--lens", "tuned", "--device", "cpu")
    assert status == 0 and out.splitlines()[0].endswith("(tuned lens)")
    status, out, _ = run(capsys, "trace", str(tiny_folder), PROMPTS[0], "--lens", "tuned", "--json", "--device", "cpu")
    data = json.loads(out)
    assert data["layers"][-1]["kl_to_output"] == pytest.approx(0, abs=1e-5)
    status, _, err = run(capsys, "trace", str(tiny_folder), PROMPTS[0], "--tuned-lens", "hub", "--device", "cpu")
    assert status == 2 and "--tuned-lens goes with --lens tuned" in err
    status, _, err = run(capsys, "train-tuned", str(tiny_folder), "--backend", "nnsight")
    assert status == 2 and "drop --backend" in err
    status, _, err = run(capsys, "train-tuned", str(tiny_folder), "--tokens", "0")
    assert status == 2 and "--tokens must be at least 1" in err


@pytest.mark.slow
def test_on_held_out_text_the_tuned_lens_is_closer_to_smollm2s_output_at_every_block_but_the_last(smollm2):
    trained = train.train_tuned(smollm2)
    exact, tuned = tuned_held_out.held_out_kl(smollm2, (EXACT, trained.lens))
    assert exact.tokens == tuned.tokens >= tuned_held_out.HELD_OUT_TOKENS
    assert all(t < e for t, e in zip(tuned.kl[:-1], exact.kl[:-1])), (exact.kl, tuned.kl)
    assert exact.kl[-1] == pytest.approx(0, abs=1e-4) and tuned.kl[-1] == pytest.approx(0, abs=1e-4)
    # Not closer by a hair: over the blocks but the last, less than half the logit lens's mean KL. (Block 0 alone
    # was the guard while the lens was fitted on this text: recipe v3 fits it mostly on the judged kinds of prompt,
    # and its block 0 here came to 7.22 nats against the logit lens's 14.32, 2026-12-03; its mean, 3.21 against 13.74.)
    assert sum(tuned.kl[:-1]) < sum(exact.kl[:-1]) / 2
