"""Before a model loads: one line saying what it will cost (parameters, dtype, memory, prompts, forward
passes) and, where this model has run on this device before, how long the lens took per prompt then."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lens.device import DTYPES, weight_bytes
from lens.paths import cache_dir

TIMINGS = "timings.json"
"""In the lens cache: seconds per prompt of the lens, per model, device and dtype, measured on earlier runs."""


@dataclass(frozen=True)
class Estimate:
    """The cost of running the lens over `prompts` prompts with one model."""

    model: str
    parameters: int
    dtype: str
    device: str
    prompts: int
    batch_size: int
    seconds_per_prompt: float | None
    """Measured on an earlier run of this model, device and dtype; None if it never ran here."""

    @property
    def weight_bytes(self) -> int:
        return weight_bytes(self.parameters, DTYPES[self.dtype])

    @property
    def forward_passes(self) -> int:
        return -(-self.prompts // self.batch_size)

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_prompt is None else self.seconds_per_prompt * self.prompts

    def line(self) -> str:
        """E.g. "smollm2: 135M parameters in float32 on cpu (0.5 GB); the lens over 1,130 prompts in 71
        forward passes; about 1 min (as measured here before)"."""
        when = ("time unknown: first run of this model on this device" if self.seconds is None
                else f"about {_duration(self.seconds)} (as measured here before)")
        return (f"{self.model}: {self.parameters / 1e6:,.0f}M parameters in {self.dtype} on {self.device} "
                f"({self.weight_bytes / 1e9:.1f} GB); the lens over {self.prompts:,} prompts in "
                f"{self.forward_passes:,} forward passes; {when}")


def estimate(model: str, parameters: int, dtype: str, device: str, prompts: int, batch_size: int = 16) -> Estimate:
    """The estimate for a model about to run, with its earlier timing on this device if there is one."""
    seconds = _load().get(_key(model, device, dtype))
    return Estimate(model, parameters, dtype, device, prompts, batch_size, seconds)


def record_timing(model: str, device: str, dtype: str, prompts: int, seconds: float) -> None:
    """Keep a measured lens time for the next estimate (written atomically; a failure to write is no error)."""
    if prompts <= 0:
        return
    timings = _load() | {_key(model, device, dtype): seconds / prompts}
    path = cache_dir() / TIMINGS
    tmp = path.with_name(f".{TIMINGS}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(timings, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _key(model: str, device: str, dtype: str) -> str:
    return f"{model} {device.split(':')[0]} {dtype}"


def _load() -> dict[str, float]:
    path: Path = cache_dir() / TIMINGS
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
