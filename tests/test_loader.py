"""Loading: the GGUF cache (a second load hits it, same results), bad files, absent weights, device and dtype."""

import pytest
import torch

import lens.models.gguf
from lens.errors import LensError
from lens.models.device import choose_device, choose_dtype
from lens.models.loader import load, plan
from lens.models.registry import registry
from lens.paths import dequantized_dir
from lens.reads.trace import trace


@pytest.fixture(scope="session")
def smollm2_gguf():
    return registry()["smollm2"].gguf_path


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_a_second_load_hits_the_cache_and_gives_identical_results(smollm2, monkeypatch):
    # The session's smollm2 was dequantized into the cache on first use (or by an earlier run).
    assert (dequantized_dir() / smollm2.weights_id[:16] / "config.json").is_file()

    def no_second_dequantize(*_):
        raise AssertionError("dequantized again instead of using the cache")

    monkeypatch.setattr(lens.models.gguf, "dequantize", no_second_dequantize)
    again = load(str(registry()["smollm2"].gguf_path), device="cpu")  # the same file, named by its path
    assert again.weights_id == smollm2.weights_id
    prompt = ["The capital of Germany is"]
    assert trace(again, prompt, [" Berlin"])[0].layers == trace(smollm2, prompt, [" Berlin"])[0].layers


@pytest.mark.slow  # reads the embedded smollm2 file (cut at 5 MB): needs it fetched, as the real models do
def test_a_truncated_gguf_is_refused_and_leaves_no_cache_entry(smollm2_gguf, empty_cache, tmp_path):
    gguf = tmp_path / "truncated.gguf"
    with smollm2_gguf.open("rb") as f:
        gguf.write_bytes(f.read(5_000_000))
    with pytest.raises(LensError, match="not a readable GGUF"):
        load(str(gguf), device="cpu")
    assert not dequantized_dir().exists() or not any(dequantized_dir().iterdir())


def test_a_corrupt_embedded_file_is_caught_by_its_published_hash(empty_cache):
    gguf = registry()["smollm2"].gguf_path
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(LensError, match="corrupt.*download smollm2"):
        load("smollm2", device="cpu")
    assert not dequantized_dir().exists()


def test_an_embedded_model_not_fetched_names_the_command(empty_cache):
    with pytest.raises(LensError, match="lens download smollm2"):
        load("smollm2", device="cpu")


def test_absent_hub_weights_name_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    size = registry()["llama3"].size_gb
    with pytest.raises(LensError, match=rf"not downloaded here: run `.*download llama3` \(about {size:g} GB\)"):
        load("llama3")


def test_device_choice_refuses_what_is_not_there():
    assert choose_device("cpu") == "cpu"
    with pytest.raises(LensError, match="unknown device"):
        choose_device("tpu")
    if not torch.backends.mps.is_available():
        with pytest.raises(LensError, match="not available"):
            choose_device("mps")


def test_the_notes_models_run_in_float32_on_a_64gb_mac_and_a_70b_one_in_bfloat16(monkeypatch):
    monkeypatch.setattr("lens.models.device.memory_bytes", lambda device: 64 * 2**30)
    assert choose_dtype(8_030_000_000, "mps") == torch.float32  # Llama 3 8B: 32 GB of 64
    assert choose_dtype(9_240_000_000, "mps") == torch.float32  # Gemma 2 9B: 37 GB
    assert choose_dtype(70_600_000_000, "mps") == torch.bfloat16
    assert choose_dtype(135_000_000, "mps") == torch.float32
    assert choose_dtype(135_000_000, "mps", "float16") == torch.float16
    with pytest.raises(LensError, match="unknown dtype"):
        choose_dtype(1, "cpu", "int8")


@pytest.mark.slow
def test_the_plan_counts_the_parameters_the_loaded_model_has(real_model):
    """What the estimate before a load says, from the config alone, against the weights once loaded."""
    planned = plan(real_model.name, device="cpu")
    assert planned.parameters == sum(p.numel() for p in real_model.hf_model.parameters())  # tied embeddings once
    assert planned.weight_bytes == real_model.weight_bytes()
