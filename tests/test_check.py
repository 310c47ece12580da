"""`lens check` flags a device whose lens disagrees with the CPU's."""

import torch

from lens.check import check_device, compare, lens_probabilities


def test_identical_probabilities_agree_and_perturbed_ones_do_not(smollm2):
    on_cpu = lens_probabilities(smollm2)
    assert compare(smollm2, on_cpu, on_cpu).agrees
    shifted = on_cpu.clone()
    shifted[0, -1] = shifted[0, -1].roll(1)  # one layer's distribution off by one token
    result = compare(smollm2, shifted, on_cpu)
    assert not result.agrees and result.top1_agreement < 1.0
    assert "DISAGREES" in result.summary()
    tiny_noise = on_cpu + 1e-5 * torch.rand_like(on_cpu)
    assert compare(smollm2, tiny_noise, on_cpu).agrees


def test_on_the_cpu_the_check_compares_like_with_like(smollm2):
    assert check_device(smollm2).max_abs_diff == 0.0
