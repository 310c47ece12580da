"""Progress bars with an ETA for the long phases (the lens over many prompts, attention, patching): on a
terminal only, gone when done, so a run's output stays short. LENS_PROGRESS=0 turns them off."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """`items`, with a progress bar on stderr while they are worked through (none off a terminal)."""
    off = os.environ.get("LENS_PROGRESS") == "0" or None  # None: tqdm shows it only on a terminal
    yield from tqdm(
        items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, disable=off, dynamic_ncols=True
    )
