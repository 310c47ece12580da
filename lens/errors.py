"""The one error type users see: a single line that says what went wrong and what to do."""

import os


class LensError(Exception):
    """A user-facing failure; the CLI prints it as one line and exits with status 2."""


def command(args: str) -> str:
    """How the user runs `lens ARGS` here (through ./run when set up by it)."""
    return f"{os.environ.get('LENS_LAUNCHER', 'lens')} {args}"


class NotAvailable(LensError):
    """What a model cannot give here (a lens it has none of, a pattern a remote model does not form): one line
    saying why; the findings skip with it."""


class NotRemote(NotAvailable):
    """What a remote model cannot give (where it runs, the pattern does not hold): one line saying why; the
    findings skip with it."""
