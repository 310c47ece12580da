"""Patching handover: the answer moves from the subject position to the last position at some layer.

Claim: the notes' next step, "Intervention experiments: try changing intermediate layers to see what
happens", as activation patching: restoring the subject position's residual stream works only up to
some layer, and restoring the last position's works only from about that layer on.

Definition: for each fact, the clean prompt "The capital of X is" and a corrupted one naming another
country of the same token length; for every block and position, the clean block output is patched into
the corrupted run and the restored share of the clean answer's probability is measured,
(p_patched - p_corrupt) / (p_clean - p_corrupt). With the subject's restoration taken as its best token's,
the handover layer is the first block where the last position restores more than the subject. The
pattern is present when the subject restores at least half somewhere before the handover, less than half
at every block after it, and the last position at least half from the handover on. Only facts the model
answers top-1 and whose clean and corrupted probabilities differ by at least 0.1 count. The claim holds if
the 95% bootstrap interval of the share of facts showing the pattern lies above 0.5.
"""

from findings.data import THRESHOLDS
from findings.evidence import handover, share_verdict

T = THRESHOLDS["patching"]


def test_patching_handover(traces, judge, claim):
    rows = []
    for fact, patching, subject, trace in traces.patched():
        layer, subject_curve, last_curve = handover(patching, subject)
        rows.append({
            "fact": fact.id, "corrupt": patching.corrupt, "handover_layer": layer,
            "subject_best_before": max(subject_curve[:layer], default=0.0) if layer is not None else None,
            "subject_best_after": max(subject_curve[layer + 1:], default=0.0) if layer is not None else None,
            "last_worst_from": min(last_curve[layer:]) if layer is not None else None,
            "pattern": layer is not None
            and max(subject_curve[:layer], default=0.0) >= T["restored"]
            and max(subject_curve[layer + 1:], default=0.0) < T["restored"]
            and min(last_curve[layer:]) >= T["restored"],
        })
    judge(share_verdict(claim, traces.model, rows, "pattern", T["majority"],
                        "share of facts whose answer moves from the subject to the last position"))
