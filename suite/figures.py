"""The report's figures: answer probability and rank over relative depth, and the logit-lens picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FORM_COLOURS = {"completion": "tab:blue", "qa": "tab:orange"}
FORM_LABELS = {"completion": "completion: “The capital of X is”", "qa": "Q&A: “Question: …? Answer:”"}


def depth_curves(record: dict, path: Path) -> None:
    """Two panels: p(answer) and rank(answer) over relative depth; thin lines per prompt, thick median."""
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for form, curves in record["curves"].items():
        depth = np.asarray(curves["depth"])
        p, rank = np.asarray(curves["p_answer"]), np.asarray(curves["rank_answer"])
        colour = FORM_COLOURS.get(form, "grey")
        for row_p, row_r in zip(p, rank):
            ax_p.plot(depth, row_p, color=colour, alpha=0.12, lw=0.8)
            ax_r.plot(depth, row_r, color=colour, alpha=0.12, lw=0.8)
        ax_p.plot(depth, np.median(p, 0), color=colour, lw=2.5, label=FORM_LABELS.get(form, form))
        ax_r.plot(depth, np.median(rank, 0), color=colour, lw=2.5, label=FORM_LABELS.get(form, form))
    ax_p.set(xlabel="relative depth (layer+1)/n_layers", ylabel="lens p(answer)", ylim=(0, 1),
             title=f"{record['model']}: answer probability")
    ax_r.set(xlabel="relative depth (layer+1)/n_layers", ylabel="lens rank of answer (1 = top)",
             yscale="log", title=f"{record['model']}: answer rank")
    ax_r.invert_yaxis()
    for ax in (ax_p, ax_r):
        ax.axvspan(0.80, 0.85, color="grey", alpha=0.15, label="notes: converges at 80-85%")
        ax.grid(alpha=0.3)
    ax_p.legend(loc="upper left", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def logit_lens_grid(grid: dict, path: Path) -> None:
    """Layers x prompt positions; each cell the lens's top next-token, coloured by its probability."""
    p = np.asarray(grid["p"])
    n_layers, n_pos = p.shape
    fig, ax = plt.subplots(figsize=(1.1 * n_pos + 2, 0.32 * n_layers + 1.5), constrained_layout=True)
    image = ax.imshow(p, aspect="auto", cmap="Blues", vmin=0, vmax=1, origin="lower")
    for layer in range(n_layers):
        for pos in range(n_pos):
            token = grid["top1"][layer][pos].replace("\n", "\\n")[:10]
            ax.text(pos, layer, token, ha="center", va="center", fontsize=6.5,
                    color="white" if p[layer, pos] > 0.6 else "black")
    ax.set_xticks(range(n_pos), [t.replace("\n", "\\n") for t in grid["tokens"]], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), [str(i) for i in range(n_layers)], fontsize=7)
    ax.set(xlabel="prompt position (input token)", ylabel="layer",
           title=f"{grid['model']}: logit lens, {grid['prompt']!r}")
    fig.colorbar(image, ax=ax, label="top-1 probability")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def position_heatmap(matrix: list[list[float]], tokens: list[str], title: str, label: str, path: Path,
                     vmin: float = 0.0, vmax: float = 1.0) -> None:
    """Layers x prompt positions, one value per cell (attention from the last position, restored probability)."""
    data = np.asarray(matrix)
    n_layers, n_pos = data.shape
    fig, ax = plt.subplots(figsize=(0.9 * n_pos + 2.5, 0.22 * n_layers + 1.8), constrained_layout=True)
    image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, origin="lower")
    ax.set_xticks(range(n_pos), [t.replace("\n", "\\n") for t in tokens], rotation=45, ha="right", fontsize=8)
    ax.set(xlabel="prompt position", ylabel="layer", title=title)
    fig.colorbar(image, ax=ax, label=label)
    fig.savefig(path, dpi=110)
    plt.close(fig)
