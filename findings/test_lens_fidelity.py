"""Lens fidelity: how close each lens stays to the model's own output on the prompts it judges.

Not a claim but the warrant for every claim read through a lens: per prompt set, lens and form, the mean KL
divergence from the output distribution to the lens at each block, over the set's prompts where the lens reads
them (the figure and table under each set's verdicts). A verdict decided where its lens is further from the
output than claims.toml [fidelity] `bound` is marked "lens not faithful here". The check itself: every lens is
the output at the last block (KL 0), whatever it does before.
"""

import pytest

from findings.data import SETS, THRESHOLDS
from lens.lenses.lenses import EXACT
from suite.figures import KLByDepth
from suite.keys import SESSION

LABELS = {EXACT.name: "logit lens"}
CASES = [
    (prompt_set, lens)
    for prompt_set in SETS
    for lens in [EXACT.name, *(name for name, sets in THRESHOLDS["lenses"].items() if prompt_set in sets)]
]


@pytest.mark.parametrize(("prompt_set", "lens"), CASES, ids=[f"{s}-{lens}" for s, lens in CASES])
def test_lens_fidelity(request, findings, prompt_set, lens, record_figure):
    asked = request.config.stash[SESSION].lenses
    if asked is not None and lens not in asked:
        pytest.skip(f"the {lens} lens is not asked for (--lens)")
    kl = findings.fidelity(prompt_set)
    traces = findings.lens(prompt_set)
    name = LABELS.get(lens, f"{lens} lens")
    record_figure(
        KLByDepth(
            model=findings.name,
            name=f"fidelity-{prompt_set}-{lens}",
            prompt_set=prompt_set,
            lens=name,
            depth=[lay.depth for lay in next(t for t in traces.values() if t)[0].layers],
            kl={form: values for form, values in kl.items() if values},
            prompts={form: len(traces[form]) for form in kl if kl[form]},
            bound=THRESHOLDS["fidelity"]["bound"],
            source=getattr(findings.lens_of(), "source", ""),
        )
    )
    last = {form: values[-1] for form, values in kl.items() if values}
    assert all(value < 1e-3 for value in last.values()), f"the {name} is not the output at the last block: {last}"
