"""suite.store: readings kept on disk under everything they depend on, read back whole or not at all."""

import os
import pickle

import torch

from lens.lenses.lenses import TunedLens
from suite.store import DEPENDS, KEEP, MISSING, Store, digest, files_state, fingerprint


def test_a_reading_is_read_back_under_its_key_and_what_it_depends_on(tmp_path):
    store = Store.open("m", {"weights": "w"}, root=tmp_path)
    assert store.load(("lens", "capitals")) is MISSING
    store.save(("lens", "capitals"), {"p": [0.25]})
    store.save(("lens", "capitals"), {"p": [0.5]}, depends="another lens")
    assert store.load(("lens", "capitals")) == {"p": [0.25]}
    assert store.load(("lens", "capitals"), depends="another lens") == {"p": [0.5]}
    assert store.load(("lens", "history")) is MISSING
    assert Store.open("m", {"weights": "other"}, root=tmp_path).load(("lens", "capitals")) is MISSING
    assert Store.open("m", {"weights": "w"}, root=tmp_path).load(("lens", "capitals")) == {"p": [0.25]}
    assert not [p for p in store.folder.iterdir() if p.name.startswith(".")]  # written whole, renamed into place


def test_a_file_that_cannot_be_read_back_is_computed_again(tmp_path):
    store = Store.open("m", {}, root=tmp_path)
    store.save("grid", [1, 2])
    (path,) = store.folder.glob("grid-*.pkl")
    path.write_bytes(path.read_bytes()[:10])  # cut short
    assert store.load("grid") is MISSING
    path.write_bytes(pickle.dumps({"key": "('other', None)", "value": 3}))  # another key's
    assert store.load("grid") is MISSING
    store.save("held", lambda: 1)  # cannot be pickled: not kept, and nothing half-written
    assert store.load("held") is MISSING and not list(store.folder.glob("*held*"))


def test_only_the_folders_used_last_stay(tmp_path):
    for i in range(KEEP + 2):
        store = Store.open("m", {"code": i}, root=tmp_path)
        os.utime(store.folder / DEPENDS, (i, i))  # used at time i
    Store.open("m", {"code": 0}, root=tmp_path)  # used now: stays, with the KEEP - 1 used last before it
    assert {p.name for p in tmp_path.iterdir()} == {f"m-{digest({'code': i})[:16]}" for i in (0, KEEP, KEEP + 1)}
    assert Store.open("m-other", {}, root=tmp_path).folder.exists()  # another model's never count


def test_a_model_folder_changed_under_the_same_id_changes_its_state(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"1234")
    (tmp_path / "notes.txt").write_text("not a model file")
    before = files_state(tmp_path)
    assert [name for name, *_ in before] == ["model.safetensors"]
    (tmp_path / "model.safetensors").write_bytes(b"12345")  # trained again, written over
    assert files_state(tmp_path) != before


def test_a_lens_fingerprint_follows_its_matrices_and_its_source():
    def lens(scale=1.0, source="trained here"):
        return TunedLens(weight=torch.eye(3).expand(2, 3, 3) * scale, bias=torch.zeros(2, 3), source=source)

    assert fingerprint(lens()) == fingerprint(lens())  # equal matrices: the same lens, whatever object holds them
    assert fingerprint(lens(1.001)) != fingerprint(lens())
    assert fingerprint(lens(source="published")) != fingerprint(lens())
