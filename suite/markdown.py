"""The report's Markdown parts: tables that fit a width (a wide one is split by columns, each part repeating the
leading ones), and the one name each lens goes by (logit, tuned, Jacobian) wherever the report names it."""

from __future__ import annotations

from tabulate import tabulate

from lens.lenses.registry import KINDS

WIDTH = 160
"""The widest a table line may be (the first screen is read without scrolling sideways)."""

LENS_NAMES = {kind.name: kind.title for kind in KINDS}
"""How the report names each lens of the lens registry (findings.json keeps their ids)."""


def lens_name(lens: str) -> str:
    """The report's name of a lens, given its id ("exact") or a figure's label ("logit lens", "tuned lens")."""
    bare = lens.removesuffix(" lens")
    return LENS_NAMES.get(bare) or next((name for name in LENS_NAMES.values() if name.lower() == bare.lower()), bare)


def table(
    rows: list[list], headers: list[str], keep: int = 1, groups: list[int] | None = None, width: int = WIDTH
) -> str:
    """A pipe table of `rows`; where its lines would be wider than `width`, several tables one under the other,
    each with the first `keep` columns and as many of the others, in order, as fit, keeping together the columns
    of a group where they fit together (`groups`: the sizes of consecutive groups after the first `keep`)."""
    whole = _pipe(rows, headers)
    if _widest(whole) <= width:
        return whole
    sizes = groups or [1] * (len(headers) - keep)
    units, start = [], keep
    for size in sizes:
        unit = list(range(start, start + size))
        start += size
        units += [unit] if _fits(rows, headers, [*range(keep), *unit], width) else [[i] for i in unit]
    parts: list[list[int]] = []
    for unit in units:
        if parts and _fits(rows, headers, [*parts[-1], *unit], width):
            parts[-1] += unit
        else:
            parts.append([*range(keep), *unit])
    return "\n\n".join(_pipe(_columns(rows, part), _pick(headers, part)) for part in parts)


def _fits(rows: list[list], headers: list[str], indices: list[int], width: int) -> bool:
    return _widest(_pipe(_columns(rows, indices), _pick(headers, indices))) <= width


def _pipe(rows: list[list], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _pick(values: list, indices: list[int]) -> list:
    return [values[i] for i in indices]


def _columns(rows: list[list], indices: list[int]) -> list[list]:
    return [_pick(row, indices) for row in rows]
