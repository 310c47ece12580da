"""Residual-vs-output discrepancy: the raw final residual differs from the output, and final norm plus soft-capping explain all of it.

Claim: "Found discrepancy between final residual stream and actual model output, revealing additional
processing layers" (project notes); "LayerNorm correction: important to apply the same normalization
the model uses internally" (readme).

Definition: on every prompt (all three forms), (a) the last block's residual unembedded without the
final norm differs from the output logits by at least 1.0 somewhere in the vocabulary, and (b) the
exact lens (final norm, unembedding, soft-capping) matches the output logits to a relative tolerance
(max |diff| / max |logit|) of 1e-5 in float32 (2e-2 in bfloat16). The claim holds if the 95% bootstrap
interval of the share of prompts where both are true lies above 0.95: no processing beyond the
final norm and soft-capping stands between the last residual and the output.
"""

import pytest

from findings.data import SETS, THRESHOLDS, forms_of
from findings.evidence import share_verdict
from lens.lenses import RAW

pytestmark = pytest.mark.claim("residual_discrepancy", number=7)

T = THRESHOLDS["residual_discrepancy"]


def test_residual_discrepancy(findings, prompt_set, judge, claim):
    tolerance = T["exact_rel_tolerance"][findings.record.dtype]
    exact, raw = findings.lens(prompt_set), findings.lens(prompt_set, RAW)
    rows = []
    for form in forms_of(prompt_set):
        for fact, trace, unnormed in zip(SETS[prompt_set], exact[form], raw[form]):
            exact_rel = trace.final_max_abs_diff / trace.output_max_abs_logit
            rows.append({
                "prompt": f"{fact.id}/{form}",
                "raw_max_abs_diff": unnormed.final_max_abs_diff,
                "raw_top1_agrees": unnormed.layers[-1].top[0][0] == unnormed.output.top[0][0],
                "exact_lens_rel_diff": exact_rel,
                "explained": unnormed.final_max_abs_diff >= T["raw_min_diff"] and exact_rel <= tolerance,
            })
    judge(share_verdict(claim, findings.name, prompt_set, rows, "explained", T["all_prompts"],
                        "share of prompts where the raw residual differs and the exact lens matches"))
