"""The registry: every named model is well formed, and any other name or path is understood or refused.

Expectations come from models.toml itself (read here with tomllib, not through the code under test), so
adding a model as the README says keeps these tests true."""

import hashlib
import re
import tomllib
from importlib.resources import files

import pytest

from lens.errors import LensError
from lens.models.registry import (
    GGUFFile,
    HubModel,
    LocalFolder,
    PyPIModel,
    embedded_models,
    registry,
    resolve,
)

TOML = tomllib.loads(files("lens").joinpath("models.toml").read_text())


def test_every_entry_of_models_toml_becomes_a_spec_of_its_source():
    assert list(registry()) == list(TOML)
    kinds = {"hub": HubModel, "pypi": PyPIModel}
    for name, entry in TOML.items():
        spec = registry()[name]
        assert type(spec) is kinds[entry["source"]]
        assert spec.title == entry["title"]


def test_the_notes_four_models_load_from_the_hub_cache():
    for name in ("llama3", "mistral", "gemma2", "qwen3"):
        spec = registry()[name]
        assert isinstance(spec, HubModel) and not spec.embedded
        assert spec.repo == TOML[name]["repo"] and spec.describe().endswith(f"(Hugging Face {spec.repo})")


def test_embedded_models_are_gguf_files_from_pypi_with_a_hash():
    assert [s.name for s in embedded_models()] == [n for n, e in TOML.items() if e.get("embedded")]
    for spec in embedded_models():
        assert isinstance(spec, PyPIModel) and spec.gguf_path.name == spec.file
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256), spec.sha256  # a SHA-256, lower-case hex
        assert len(spec.members) == len(spec.packages)


def test_paths_and_repo_ids_are_understood(tmp_path):
    gguf = tmp_path / "My.Model.gguf"
    gguf.write_bytes(b"")
    spec = resolve(str(gguf))
    assert isinstance(spec, GGUFFile) and spec.name == "my-model" and spec.gguf_path == gguf
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    assert isinstance(resolve(str(tmp_path / "folder")), LocalFolder)
    hub = resolve("Qwen/Qwen2-0.5B")
    assert isinstance(hub, HubModel) and hub.repo == "Qwen/Qwen2-0.5B"
    assert hub.download_command().endswith("download Qwen/Qwen2-0.5B")  # a command that works as written


@pytest.mark.parametrize(
    "name, message",
    [
        ("llama-3", f"unknown model 'llama-3': use one of {', '.join(TOML)}"),
        ("/nowhere/model.gguf", "no GGUF file at /nowhere/model.gguf"),
    ],
)
def test_bad_names_get_one_clear_line(name, message):
    with pytest.raises(LensError) as error:
        resolve(name)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@pytest.mark.slow  # hashes the embedded models' files: needs them fetched, as the real models do
@pytest.mark.parametrize("name", [name for name, entry in TOML.items() if entry.get("embedded")])
def test_an_embedded_models_file_on_disk_has_the_sha256_models_toml_publishes(name):
    digest = hashlib.sha256()
    with registry()[name].gguf_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == TOML[name]["sha256"]


def test_every_model_in_models_toml_has_a_registered_marker(pytestconfig):
    # The plugin registers the markers from the registry; the names here come from models.toml itself.
    markers = {re.split(r"[:(]", line)[0] for line in pytestconfig.getini("markers")}
    assert set(TOML) | {"slow", "claim"} <= markers


def test_the_published_lenses_models_toml_names_are_well_formed():
    """Each `tuned_lens` names a folder in a Hub repo (pinned to a commit where it says one), each `jacobian_lens`
    a name TransformerLens's registry knows, and a model that runs on NDIF names none (lenses are applied here)."""
    from lens.lenses.jacobian import published_entry

    for name, entry in TOML.items():
        spec = registry()[name]
        assert (spec.tuned_lens is None) == ("tuned_lens" not in entry), name
        if spec.tuned_lens is not None:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", spec.tuned_lens.repo) and spec.tuned_lens.path, name
            assert spec.tuned_lens.repo_type in ("model", "space"), name
            assert spec.tuned_lens.revision is None or re.fullmatch(r"[0-9a-f]{40}", spec.tuned_lens.revision), name
            assert spec.tuned_lens.provenance.startswith(f"published: {spec.tuned_lens.repo}/{spec.tuned_lens.path}")
        if spec.jacobian_lens is not None:
            assert published_entry(spec.jacobian_lens) is not None, name
        if getattr(spec, "remote", False):
            assert spec.tuned_lens is None and spec.jacobian_lens is None, name
