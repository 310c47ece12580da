"""What the suite knows of the package of claims, and all it knows: the paths the project's pytest configuration
names in the ini options declared here (pytest.ini's [pytest], or pyproject.toml's [tool.pytest.ini_options]),
never a path written in the suite's code. A pytest run reads them as pytest does (`config.getini`); the commands
that run no pytest (`./run verdicts`, `./run upgrade-check`, `./run report`) read the same file here, found as
pytest finds it. Imports no torch."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import iniconfig

FINDINGS, EXPECTED, SETTINGS, NOTES = "lens_findings", "lens_expected_verdicts", "lens_settings", "lens_report_notes"
OPTIONS = {
    FINDINGS: "the package of claims, a folder from the rootdir: what `./run findings` and the upgrade check run "
    "(its per-layer snapshots under its `__snapshots__`)",
    EXPECTED: "the recorded verdicts, a TOML file from the rootdir, that `./run verdicts --record` writes",
    SETTINGS: "the claims' settings, a TOML file from the rootdir: the upgrade check reads its [snapshot] tolerance",
    NOTES: "a Markdown file (from the rootdir) the report shows under 'Settled by construction'",
}
"""The ini options the suite's plugin declares, each with its help."""
FILES = (
    ("pytest.ini", "pytest"),
    (".pytest.ini", "pytest"),
    ("pyproject.toml", "tool.pytest.ini_options"),
    ("tox.ini", "pytest"),
    ("setup.cfg", "tool:pytest"),
)
"""Where pytest looks for its configuration in each folder, in its order, and the section it reads there."""


def project_config(start: Path | None = None) -> tuple[Path, dict[str, str]] | None:
    """The rootdir and the pytest options of the first configuration file from `start` (default: here) upward, as
    pytest finds it (a pyproject.toml, tox.ini or setup.cfg counts only with its pytest section); None: none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name, section in FILES:
            path = folder / name
            if not path.is_file():
                continue
            if name == "pyproject.toml":
                table = tomllib.loads(path.read_text()).get("tool", {}).get("pytest", {}).get("ini_options")
                if table is not None:
                    return folder, {key: str(value) for key, value in table.items()}
                continue
            config = iniconfig.IniConfig(str(path))
            if section in config:
                return folder, dict(config[section].items())
            if name.endswith("pytest.ini"):
                return folder, {}  # pytest.ini is pytest's even without the section
    return None


def option(name: str, start: Path | None = None) -> str:
    """An option's value in the project's pytest configuration, as written ("" where it names none)."""
    found = project_config(start)
    return found[1].get(name, "").strip() if found else ""


def path_option(name: str, start: Path | None = None) -> Path:
    """The path an option names, from the rootdir; one line saying what to add where the configuration names none."""
    found = project_config(start)
    value = found[1].get(name, "").strip() if found else ""
    if not value:
        from lens.errors import LensError  # only to raise: the lens package imports torch

        where = "pytest.ini" if found is None else "the [pytest] section of the pytest configuration"
        raise LensError(f"{where} names no {name} ({OPTIONS[name]}): add `{name} = PATH` there")
    return found[0] / value


def findings_command(args: str) -> str:
    """How the user runs the findings with ARGS here: through ./run when set up by it, else pytest on the package of
    claims the configuration names (on what pytest collects where it names none)."""
    if os.environ.get("LENS_LAUNCHER"):
        return f"./run findings {args}"
    folder = option(FINDINGS)
    return f"pytest {folder.rstrip('/')}/ {args}" if folder else f"pytest {args}"
