"""Speed and memory of the lens against a plain transformers forward pass, as ratios (targets.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from findings.data import FACTS
from lens.models.loader import load, release
from lens.reads.trace import trace

ROOT = Path(__file__).parent.parent
PROMPTS = [fact.completion for fact in FACTS[:20]]
ANSWERS = [f" {fact.answer}" for fact in FACTS[:20]]


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model(request):
    loaded = load(request.param, device="cpu")
    yield loaded
    release(loaded)


@pytest.fixture(scope="module")
def plain(model):
    """The same weights as a plain transformers model (its default attention)."""
    folder, _ = model.spec.weights_folder()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture
def one_thread():
    """The lens against its floor on one thread each: the ratio is then the work done, not the cores found."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def forward(plain, tokenizer, prompts):
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        plain(**batch)


def test_forward_batch(measure, model, plain):
    measure("forward_batch", lambda: forward(plain, model.tokenizer, PROMPTS))


def test_trace_batch(measure, model):
    measure("trace_batch", lambda: trace(model, PROMPTS, ANSWERS))


def floor(model, plain, prompts):
    """What the lens cannot do without: one forward pass, then the final norm and unembedding (and soft-cap)
    of every block's output at the read position."""
    batch = model.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        hidden = plain(**batch, output_hidden_states=True, logits_to_keep=1).hidden_states[1:]
        resid = torch.stack([h[:, -1] for h in hidden], dim=1)
        logits = plain.lm_head(plain.model.norm(resid))
        if model.softcap:
            torch.tanh(logits / model.softcap) * model.softcap


def test_floor_batch(measure, model, plain, one_thread):
    measure("floor_batch", lambda: floor(model, plain, PROMPTS))


def test_trace_batch_one_thread(measure, model, one_thread):
    measure("trace_batch_one_thread", lambda: trace(model, PROMPTS, ANSWERS))


def test_forward_one(measure, model, plain):
    measure("forward_one", lambda: forward(plain, model.tokenizer, PROMPTS[:1]))


def test_trace_one(measure, model):
    measure("trace_one", lambda: trace(model, PROMPTS[:1], ANSWERS[:1]))


def test_trace_20_single(measure, model):
    measure("trace_20_single", lambda: [trace(model, [p], [a]) for p, a in zip(PROMPTS, ANSWERS)], rounds=3)


def test_load_cached(measure, model):
    measure("load_cached", lambda: load(model.name, device="cpu"), rounds=3)


def test_load_first(measure, model, tmp_path_factory, monkeypatch):
    def fresh_cache():
        monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        (Path(os.environ["LENS_CACHE_DIR"]) / "gguf").mkdir()
        (Path(os.environ["LENS_CACHE_DIR"]) / "gguf" / model.spec.file).symlink_to(gguf)

    gguf = model.spec.gguf_path
    measure("load_first", lambda: load(model.name, device="cpu"), rounds=1, setup=fresh_cache)


def test_suite(measure, record, model, tmp_path):
    peak = tmp_path / "peak"
    command = [
        sys.executable,
        "benchmarks/peak_rss.py",
        str(peak),
        "pytest",
        "findings/",
        "-m",
        model.name,
        "-q",
        "-p",
        "no:cacheprovider",
        "--reports",
        str(tmp_path / "reports"),
    ]
    measure("suite", lambda: subprocess.run(command, cwd=ROOT, check=True, capture_output=True), rounds=1)
    record(model.name, "suite_peak_bytes", float(peak.read_text()))
    record(model.name, "weight_bytes", float(model.weight_bytes()))


def test_suite_baseline(measure, model):
    command = [sys.executable, "benchmarks/plain_forwards.py", model.name]
    measure("suite_baseline", lambda: subprocess.run(command, cwd=ROOT, check=True, capture_output=True), rounds=1)


def test_patching_one(measure, model):
    from lens.reads.patching import patch_residuals

    measure("patching_one", lambda: patch_residuals(model, PROMPTS[0], PROMPTS[1], ANSWERS[0]), rounds=3)
