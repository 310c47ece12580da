"""lens.models.device: the known silent MPS matmul errors are refused in one line, on the torch versions they hit."""

import pytest

from lens.errors import LensError
from lens.models.device import mps_matmul_hazard

LLAMA3 = {"hidden size": 4096, "MLP width": 14336}


@pytest.mark.parametrize(
    "torch_version, reductions, issue",
    [
        ("2.13.0", LLAMA3, None),  # no reduction over 32768
        ("2.13.0", {"hidden size": 4096, "MLP width": 49152}, "193487"),  # a wide MLP on the pinned Linux torch
        ("2.14.1", {"hidden size": 4096, "MLP width": 49152}, None),  # 2.14 routes 2-D matmuls around it
        ("2.14.1", {"prompt length": 40_000}, "195163"),  # batched matmuls: still wrong on 2.14
        ("2.15.0", {"prompt length": 40_000}, "195163"),
        ("2.14.1", {"prompt length": 12}, None),
        ("2.13.0+cpu", {"MLP width": 32769}, "193487"),
        ("2.13.0", {"MLP width": 32768}, None),  # the bound itself is fine
    ],
)
def test_known_silent_mps_matmul_errors(torch_version, reductions, issue):
    found = mps_matmul_hazard(reductions, torch_version)
    assert (found is None) == (issue is None)
    if issue:
        assert issue in found and "\n" not in found and "--device cpu" in found


def test_a_load_on_mps_is_refused_before_any_weight_is_read(monkeypatch, tiny_tokenizer, tmp_path):
    """A model whose MLP is wider than 32768 on an affected torch: one line, the issue number, nothing loaded."""
    import transformers as hf

    import lens.models.device
    import lens.models.loader
    from lens.models.registry import LocalFolder

    config = hf.LlamaConfig(
        vocab_size=400,
        hidden_size=64,
        intermediate_size=40_000,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config.save_pretrained(tmp_path)
    spec = LocalFolder(name="wide", path=tmp_path, title="wide")
    monkeypatch.setattr(lens.models.loader, "resolve", lambda name: spec)
    monkeypatch.setattr(LocalFolder, "weights_folder", lambda self: (tmp_path, "none"))
    monkeypatch.setattr(lens.models.loader, "choose_device", lambda device: "mps")
    monkeypatch.setattr(
        lens.models.loader,
        "mps_matmul_hazard",
        lambda reductions: lens.models.device.mps_matmul_hazard(reductions, "2.13.0"),
    )
    with pytest.raises(LensError, match="193487"):
        lens.models.loader.plan("wide")
