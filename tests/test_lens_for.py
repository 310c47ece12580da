"""Which lens a finding reads through (findings/model_findings.py `lens_for`), decided on hand-built answers of its
sources: the published tuned lens where it is here, else the one trained here (named by its training record); a
broken published copy is an error, never a reason to train; TransformerLens's Jacobian lens where it is here, else
the finding skips with its one line; no lens but the logit lens on NDIF; any other name is refused.
(tests/test_published.py reads real published folders through the same function.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import findings.model_findings as model_findings
from lens import LensError, TunedLens
from lens.errors import NotAvailable, NotRemote
from lens.lenses import jacobian as jacobian_source
from lens.lenses import published as published_source
from lens.remote.model import RemoteModel

MODEL = SimpleNamespace(name="tiny")
REMOTE = object.__new__(RemoteModel)  # its type alone decides: nothing of it is asked
PUBLISHED = TunedLens(weight=torch.zeros(1, 2, 2), bias=torch.zeros(1, 2), source="published: someone/lenses")
TRAINED = TunedLens(weight=torch.ones(1, 2, 2), bias=torch.zeros(1, 2))
JACOBIAN = SimpleNamespace(name="jacobian", source="hub:tiny")


class Sources:
    """Stand-ins for the three places a lens comes from, each answering as told and counting its calls."""

    def __init__(self, monkeypatch, training_folder, published=None, jacobian=JACOBIAN):
        self.calls: list[str] = []
        self.published, self.jacobian, self.folder = published, jacobian, training_folder
        monkeypatch.setattr(published_source, "published_tuned_lens", self.published_tuned_lens)
        monkeypatch.setattr(published_source, "train_tuned", self.train_tuned)
        monkeypatch.setattr(jacobian_source, "jacobian_lens", self.jacobian_lens)

    def answer(self, name: str, value):
        self.calls.append(name)
        if isinstance(value, Exception):
            raise value
        return value

    def published_tuned_lens(self, model, say=None):
        return self.answer("published", self.published)

    def train_tuned(self, model, say=None):
        return self.answer("trained", SimpleNamespace(lens=TRAINED, folder=self.folder))

    def jacobian_lens(self, model):
        return self.answer("jacobian", self.jacobian)


@pytest.fixture
def training_folder(tmp_path):
    """Where a lens trained here lies, with the record its training wrote."""
    (tmp_path / "training.json").write_text(json.dumps({"recipe": "lstsq-test", "read_tokens": 1234, "corpus": "wiki"}))
    return tmp_path


def test_the_published_tuned_lens_is_preferred_and_nothing_is_trained(monkeypatch, training_folder):
    sources = Sources(monkeypatch, training_folder, published=PUBLISHED)
    assert model_findings.lens_for(MODEL, "tuned") is PUBLISHED
    assert sources.calls == ["published"]


def test_without_a_published_lens_here_the_one_trained_here_is_read_named_by_its_record(monkeypatch, training_folder):
    sources = Sources(monkeypatch, training_folder, published=None)
    lens = model_findings.lens_for(MODEL, "tuned")
    assert sources.calls == ["published", "trained"]
    assert torch.equal(lens.weight, TRAINED.weight)
    assert lens.source == "trained here: lstsq-test, 1,234 tokens of wiki"


def test_a_broken_published_copy_is_an_error_and_not_a_reason_to_train(monkeypatch, training_folder):
    broken = LensError("the published tuned lens in /x cannot be read")
    sources = Sources(monkeypatch, training_folder, published=broken)
    with pytest.raises(LensError, match="cannot be read") as raised:
        model_findings.lens_for(MODEL, "tuned")
    assert not isinstance(raised.value, NotAvailable)  # a skip would hide it
    assert sources.calls == ["published"]


def test_the_jacobian_lens_is_read_where_it_is_here_and_the_finding_skips_where_not(monkeypatch, training_folder):
    sources = Sources(monkeypatch, training_folder)
    assert model_findings.lens_for(MODEL, "jacobian") is JACOBIAN
    missing = LensError("TransformerLens publishes no Jacobian lens for tiny (...)")
    sources = Sources(monkeypatch, training_folder, jacobian=missing)
    with pytest.raises(NotAvailable, match=r"^TransformerLens publishes no Jacobian lens for tiny \(\.\.\.\)$"):
        model_findings.lens_for(MODEL, "jacobian")
    assert sources.calls == ["jacobian"]


@pytest.mark.parametrize("name", ["tuned", "jacobian"])
def test_on_ndif_no_lens_but_the_logit_lens_is_read_and_no_source_is_asked(monkeypatch, training_folder, name):
    sources = Sources(monkeypatch, training_folder, published=PUBLISHED)
    with pytest.raises(NotRemote, match=f"the {name} lens is not read on NDIF"):
        model_findings.lens_for(REMOTE, name)
    assert sources.calls == []


@pytest.mark.parametrize("name", ["tunned", "Jacobian"])
def test_any_other_name_is_refused_naming_the_lenses(monkeypatch, training_folder, name):
    sources = Sources(monkeypatch, training_folder, published=PUBLISHED)
    with pytest.raises(ValueError, match=rf"^no lens named '{name}': use one of .*tuned, jacobian"):
        model_findings.lens_for(MODEL, name)
    assert sources.calls == []
