"""A trace as a readable per-layer table for the terminal."""

from tabulate import tabulate

from lens.reads.records import Trace


def trace_table(trace: Trace) -> str:
    """One row per block (and one for the output): top tokens, answer probability and rank, entropy."""
    has_answer = trace.answer is not None

    def tops(top) -> str:
        return "  ".join(f"{tok!r} {p:.2f}" for tok, p in top)

    rows = []
    for lay in trace.layers:
        row = [lay.layer, f"{lay.depth:.2f}", tops(lay.top)]
        if has_answer:
            row += [f"{lay.p_answer:.3f}", lay.rank_answer]
        rows.append(row + [f"{lay.entropy:.2f}", f"{lay.kl_to_output:.2f}"])
    out = trace.output
    row = ["out", "", tops(out.top)]
    if has_answer:
        row += [f"{out.p_answer:.3f}", out.rank_answer]
    rows.append(row + [f"{out.entropy:.2f}", ""])
    headers = ["layer", "depth", "top tokens (p)"]
    if has_answer:
        headers += [f"p({trace.answer_token!r})", "rank"]
    headers += ["entropy", "KL to out"]
    title = f"{trace.model}: {trace.prompt!r}"
    if trace.read_after != trace.prompt:
        title += f"  (read after {trace.read_after!r}: the answer's leading whitespace is a token of its own)"
    if trace.lens != "exact":
        title += f"  ({trace.lens} lens)"
    if trace.temperature != 1.0:
        title += f"  (temperature {trace.temperature:g})"
    return title + "\n" + tabulate(rows, headers=headers, disable_numparse=True)
