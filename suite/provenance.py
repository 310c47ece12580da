"""What made a run, for its stamp: the versions of the libraries that decide what the findings compute (named once,
in `libraries.toml`) and the git commit of the code that ran, with whether the checkout differed from it. Imports
no torch: `./run report` reads stamps too."""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_DECLARED = tomllib.loads((Path(__file__).with_name("libraries.toml")).read_text())
LIBRARIES: tuple[str, ...] = tuple(_DECLARED)
"""The libraries whose versions a run is stamped with and a kept reading depends on, in their stamp order."""
UPGRADED: tuple[str, ...] = tuple(name for name, entry in _DECLARED.items() if entry.get("upgrade"))
"""The libraries a plain `./run upgrade-check` tries at their newest versions."""
UNKNOWN = "unknown"
"""The commit of code that is not a git checkout (a tarball, a copy), where git is not installed, or of a run
recorded before commits were."""
CODE = Path(__file__).resolve().parent.parent
"""The checkout the suite's code runs from (lens/, suite/ and the claims beside them)."""


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """The installed version of each library (absent ones left out)."""
    found = {}
    for library in libraries:
        try:
            found[library] = version(library)
        except PackageNotFoundError:
            pass
    return found


@dataclass(frozen=True)
class Commit:
    """The git commit of the code that ran, and whether the checkout differed from it (tracked changes or files
    git does not ignore); `UNKNOWN` and None where there is no git checkout to ask."""

    sha: str = UNKNOWN
    dirty: bool | None = None

    @property
    def text(self) -> str:
        """ "3f2a9c1d0b7e", "3f2a9c1d0b7e + uncommitted changes", or "unknown"."""
        return self.sha if self.sha == UNKNOWN else self.sha[:12] + (" + uncommitted changes" if self.dirty else "")


def code_commit(code: Path = CODE, outputs: tuple[Path, ...] = ()) -> Commit:
    """The commit checked out at `code` and whether anything there differs from it, `outputs` aside (the reports
    folder a run writes: an earlier run's uncommitted report is no change of code). No git, or no checkout: unknown."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(code), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        sha, top = git("rev-parse", "HEAD"), Path(git("rev-parse", "--show-toplevel"))
        aside = [
            f":(top,exclude){path.resolve().relative_to(top.resolve())}"
            for path in outputs
            if path.resolve().is_relative_to(top.resolve())
        ]
        changed = git("status", "--porcelain", "--", *aside)
    except (OSError, subprocess.SubprocessError):
        return Commit()
    return Commit(sha, bool(changed))
