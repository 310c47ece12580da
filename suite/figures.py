"""The report's figures, as plain-value records a test can carry to the report (`record_figure`) and the
report draws: curves over relative depth, a token grid, and a layers x positions heatmap."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


@dataclass(frozen=True)
class Figure:
    """A figure of one model (or several), named for its file: `{model}-{name}.png`."""

    kind: ClassVar[str] = ""
    model: str
    name: str
    """What the figure shows, as a file-name part, e.g. "answer-by-depth"."""

    def to_dict(self) -> dict:
        """Plain values (xdist, JSON), with the kind to draw it by."""
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(data: dict) -> Figure:
        """The figure a `to_dict` came from."""
        fields = {k: v for k, v in data.items() if k not in ("kind", "claim")}
        return FIGURE_KINDS[data["kind"]](**fields)

    @property
    def file(self) -> str:
        return f"{self.model}-{self.name}.png"

    def draw(self, path: Path) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class DepthCurves(Figure):
    """Two panels: a probability and a rank over relative depth; thin lines per prompt, thick median,
    one colour per series (e.g. per prompt form)."""

    kind: ClassVar[str] = "depth_curves"
    depth: list[float] = field(default_factory=list)
    p: dict[str, list[list[float]]] = field(default_factory=dict)
    """Series label -> (prompts, depths) probabilities."""
    rank: dict[str, list[list[int]]] = field(default_factory=dict)
    """Series label -> (prompts, depths) ranks, 1 = top."""
    what: str = "answer"
    band: tuple[float, float] | None = None
    """A span of depth to shade, e.g. a claim's range."""
    band_label: str = ""

    def draw(self, path: Path) -> None:
        fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
        depth = np.asarray(self.depth)
        for colour, label in zip(COLOURS, self.p):
            p, rank = np.asarray(self.p[label]), np.asarray(self.rank[label])
            for row_p, row_r in zip(p, rank):
                ax_p.plot(depth, row_p, color=colour, alpha=0.12, lw=0.8)
                ax_r.plot(depth, row_r, color=colour, alpha=0.12, lw=0.8)
            ax_p.plot(depth, np.median(p, 0), color=colour, lw=2.5, label=label)
            ax_r.plot(depth, np.median(rank, 0), color=colour, lw=2.5, label=label)
        ax_p.set(
            xlabel="relative depth (layer+1)/n_layers",
            ylabel=f"lens p({self.what})",
            ylim=(0, 1),
            title=f"{self.model}: {self.what} probability",
        )
        ax_r.set(
            xlabel="relative depth (layer+1)/n_layers",
            ylabel=f"lens rank of {self.what} (1 = top)",
            yscale="log",
            title=f"{self.model}: {self.what} rank",
        )
        ax_r.invert_yaxis()
        for ax in (ax_p, ax_r):
            if self.band:
                ax.axvspan(*self.band, color="grey", alpha=0.15, label=self.band_label)
            ax.grid(alpha=0.3)
        ax_p.legend(loc="upper left", fontsize=8)
        _save(fig, path)


@dataclass(frozen=True)
class TokenGrid(Figure):
    """Layers x prompt positions; each cell a token, coloured by its probability (the logit-lens picture)."""

    kind: ClassVar[str] = "token_grid"
    title: str = ""
    tokens: list[str] = field(default_factory=list)
    """The prompt's tokens (x axis)."""
    top1: list[list[str]] = field(default_factory=list)
    """(layers, positions) the token shown in each cell."""
    p: list[list[float]] = field(default_factory=list)

    def draw(self, path: Path) -> None:
        p = np.asarray(self.p)
        n_layers, n_pos = p.shape
        fig, ax = _layers_by_positions(
            p,
            self.tokens,
            (1.1 * n_pos + 2, 0.32 * n_layers + 1.5),
            "Blues",
            0,
            1,
            "prompt position (input token)",
            self.title,
            "top-1 probability",
        )
        for layer in range(n_layers):
            for pos in range(n_pos):
                token = _printable(self.top1[layer][pos])[:10]
                ax.text(
                    pos,
                    layer,
                    token,
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if p[layer, pos] > 0.6 else "black",
                )
        ax.set_yticks(range(n_layers), [str(i) for i in range(n_layers)], fontsize=7)
        _save(fig, path)


@dataclass(frozen=True)
class PositionHeatmap(Figure):
    """Layers x prompt positions, one value per cell (attention from the last position, restored probability)."""

    kind: ClassVar[str] = "position_heatmap"
    title: str = ""
    tokens: list[str] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    label: str = ""
    vmin: float = 0.0
    vmax: float = 1.0

    def draw(self, path: Path) -> None:
        data = np.asarray(self.values)
        n_layers, n_pos = data.shape
        fig, _ = _layers_by_positions(
            data,
            self.tokens,
            (0.9 * n_pos + 2.5, 0.22 * n_layers + 1.8),
            "viridis",
            self.vmin,
            self.vmax,
            "prompt position",
            self.title,
            self.label,
        )
        _save(fig, path)


@dataclass(frozen=True)
class DepthOverlay(Figure):
    """Every model's median curve over relative depth in one panel, one colour per model, one line style
    per series: the notes' headline picture, drawn from the models' own DepthCurves."""

    kind: ClassVar[str] = "depth_overlay"
    depth: dict[str, list[float]] = field(default_factory=dict)
    """Model -> its relative depths."""
    median: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Model -> series label -> median probability at each depth."""
    what: str = "answer"
    band: tuple[float, float] | None = None
    band_label: str = ""

    @staticmethod
    def of(curves: list[DepthCurves]) -> DepthOverlay:
        """The overlay of several models' DepthCurves of one name."""
        first = curves[0]
        return DepthOverlay(
            model="all-models",
            name=first.name,
            what=first.what,
            band=first.band,
            band_label=first.band_label,
            depth={c.model: c.depth for c in curves},
            median={c.model: {label: np.median(np.asarray(p), 0).tolist() for label, p in c.p.items()} for c in curves},
        )

    def draw(self, path: Path) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
        for colour, model in zip(COLOURS * 4, self.median):
            for style, (label, p) in zip(("-", "--", ":", "-."), self.median[model].items()):
                ax.plot(self.depth[model], p, color=colour, ls=style, lw=2, label=f"{model}, {label}")
        if self.band:
            ax.axvspan(*self.band, color="grey", alpha=0.15, label=self.band_label)
        ax.set(
            xlabel="relative depth (layer+1)/n_layers",
            ylabel=f"median lens p({self.what})",
            ylim=(0, 1),
            title=f"{self.what} probability by relative depth, every model",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        _save(fig, path)


@dataclass(frozen=True)
class KLByDepth(Figure):
    """A lens's fidelity on one prompt set: the mean KL divergence from the model's output to the lens at each
    block, one line per form, with the bound a deciding depth must meet."""

    kind: ClassVar[str] = "kl_by_depth"
    prompt_set: str = ""
    lens: str = ""
    """The lens, as the report names it ("logit lens", "tuned lens")."""
    depth: list[float] = field(default_factory=list)
    kl: dict[str, list[float]] = field(default_factory=dict)
    """Form -> mean KL(output || lens) in nats at each block."""
    prompts: dict[str, int] = field(default_factory=dict)
    """Form -> how many prompts each mean is over."""
    bound: float | None = None
    """The KL above which a verdict decided there is marked "lens not faithful here"."""
    source: str = ""
    """Where the lens came from and by what recipe (`lens.lenses.lenses.BlockwiseLens.source`; empty for the logit
    lens)."""

    def at(self, depth: float) -> dict[str, float]:
        """Per series, the mean KL at the first block at or past `depth`."""
        block = next(i for i, d in enumerate(self.depth) if d >= depth - 1e-9)
        return {label: kl[block] for label, kl in self.kl.items()}

    def draw(self, path: Path) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
        for (colour, style), (label, kl) in zip(((c, s) for s in ("-", "--", ":") for c in COLOURS), self.kl.items()):
            ax.plot(self.depth, np.maximum(kl, 1e-4), color=colour, ls=style, lw=2, label=f"{self.lens}, {label}")
        if self.bound is not None:
            ax.axhline(self.bound, color="grey", ls="--", lw=1, label=f"bound {self.bound:g} nats")
        ax.set(
            xlabel="relative depth (layer+1)/n_layers",
            ylabel="mean KL(output || lens), nats",
            yscale="log",
            title=f"{self.model}: {self.lens} fidelity on {self.prompt_set}",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
        _save(fig, path)


FIGURE_KINDS: dict[str, type[Figure]] = {
    f.kind: f for f in (DepthCurves, TokenGrid, PositionHeatmap, DepthOverlay, KLByDepth)
}


def overlays(figures: list[Figure]) -> list[Figure]:
    """One DepthOverlay per figure name that several models' DepthCurves share."""
    named: dict[str, list[DepthCurves]] = {}
    for figure in figures:
        if isinstance(figure, DepthCurves):
            named.setdefault(figure.name, []).append(figure)
    return [DepthOverlay.of(curves) for curves in named.values() if len(curves) > 1]


def _layers_by_positions(
    data: np.ndarray,
    tokens: list[str],
    size: tuple[float, float],
    cmap: str,
    vmin: float,
    vmax: float,
    xlabel: str,
    title: str,
    label: str,
):
    """A (layers, positions) image with the prompt's tokens under it and a colour bar: (figure, axes)."""
    fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    image = ax.imshow(data, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    ax.set_xticks(range(data.shape[1]), [_printable(t) for t in tokens], rotation=45, ha="right", fontsize=8)
    ax.set(xlabel=xlabel, ylabel="layer", title=title)
    fig.colorbar(image, ax=ax, label=label)
    return fig, ax


def _printable(token: str) -> str:
    return token.replace("\n", "\\n")


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
