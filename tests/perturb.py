"""A pytest plugin for tests only: every model the findings load gets its last block's MLP zeroed.

Used with `-p tests.perturb` to show that a changed model fails the snapshots and flips verdicts. Its weights
id is the model's: its readings are neither read from nor written to the readings kept on disk (`--recompute`)."""

import pytest
import torch

import lens.models.loader

_load = lens.models.loader.load


def zero_last_mlp(model: lens.models.loader.LoadedModel) -> lens.models.loader.LoadedModel:
    """Zero the last block's MLP output weights, in place: a clearly different model."""
    with torch.no_grad():
        model.hf_model.model.layers[-1].mlp.down_proj.weight.zero_()
    return model


def _perturbed_load(*args, **kwargs):
    return zero_last_mlp(_load(*args, **kwargs))


@pytest.hookimpl(tryfirst=True)  # before the suite's session reads the options
def pytest_configure(config):
    lens.models.loader.load = _perturbed_load
    config.option.lens_recompute = True  # its readings are not the model's: never read back, never kept
