"""The registry: every named model is well formed, and any other name or path is understood or refused."""

import pytest

from lens.errors import LensError
from lens.registry import embedded_models, registry, resolve

NOTES_MODELS = {
    "llama3": "meta-llama/Meta-Llama-3-8B",
    "mistral": "mistralai/Mistral-7B-v0.1",
    "gemma2": "google/gemma-2-9b",
    "qwen3": "Qwen/Qwen3-8B",
}


def test_the_notes_four_models_load_from_the_hub_cache():
    for name, repo in NOTES_MODELS.items():
        spec = registry()[name]
        assert (spec.source, spec.repo, spec.embedded) == ("hub", repo, False)


def test_embedded_models_are_gguf_files_from_pypi_with_a_hash():
    assert [s.name for s in embedded_models()] == ["smollm2", "gemma3"]
    for spec in embedded_models():
        assert spec.source == "pypi" and spec.gguf_path.name == spec.file
        assert len(spec.sha256) == 64 and len(spec.packages) == len(spec.members) or len(spec.members) == 1


def test_paths_and_repo_ids_are_understood(tmp_path):
    gguf = tmp_path / "My.Model.gguf"
    gguf.write_bytes(b"")
    assert resolve(str(gguf)).source == "gguf"
    assert resolve(str(gguf)).name == "my-model"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    assert resolve(str(tmp_path / "folder")).source == "local"
    assert resolve("Qwen/Qwen2-0.5B").repo == "Qwen/Qwen2-0.5B"


@pytest.mark.parametrize(
    "name, message",
    [
        ("llama-3", "unknown model 'llama-3': use one of llama3, mistral, gemma2, qwen3, smollm2, gemma3"),
        ("/nowhere/model.gguf", "no GGUF file at /nowhere/model.gguf"),
    ],
)
def test_bad_names_get_one_clear_line(name, message):
    with pytest.raises(LensError) as error:
        resolve(name)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_every_registered_model_has_a_marker(pytestconfig):
    markers = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(registry()) <= markers
