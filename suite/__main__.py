"""`python -m suite report` re-renders the report from findings.json (no model runs, no torch is imported);
`python -m suite verdicts --record` records a run's verdicts as the expected ones; `python -m suite upgrade-check`
runs the findings under candidate library versions in a second environment (suite.upgrade)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.config import EXPECTED, path_option
from suite.provenance import UPGRADED


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for bad input, with a one-line message)."""
    parser = argparse.ArgumentParser(prog="./run", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    p = sub.add_parser("report", help="re-render reports/findings.md from reports/findings.json")
    p.add_argument("--reports", default="reports", help="the reports folder (default: reports)")
    p.set_defaults(run=_report)
    p = sub.add_parser("verdicts", help="record the last run's verdicts as the expected ones")
    p.add_argument(
        "--record",
        action="store_true",
        required=True,
        help="write them to the recorded verdicts (review the diff before committing)",
    )
    p.add_argument("--reports", default="reports")
    p.add_argument("--to", default=None, help=f"where (default: what the pytest configuration's {EXPECTED} names)")
    p.set_defaults(run=_verdicts)
    p = sub.add_parser("upgrade-check", help="the findings under candidate library versions, in .venv-upgrade")
    p.add_argument(
        "candidates",
        nargs="*",
        metavar="PACKAGE==VERSION",
        help=f"the versions to try (default: the newest {', '.join(UPGRADED)})",
    )
    p.add_argument("--take", action="store_true", help="move requirements.lock to the last candidate checked")
    # e.g. ./run upgrade-check torch==2.14.1 -- -m smollm2 (pytest arguments for the candidate's findings run)
    p.set_defaults(run=_upgrade_check)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # after "--": pytest arguments for the candidate run
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]
    try:
        return args.run(args)
    except Exception as error:
        from lens.errors import LensError  # here, not above: the lens package imports torch, which a report needs not

        if not isinstance(error, LensError):
            raise
        print(f"run: {error}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace) -> int:
    from suite.report import rerender

    print(rerender(Path(args.reports)))
    return 0


def _verdicts(args: argparse.Namespace) -> int:
    from lens.errors import LensError
    from suite.document import RESULTS, load_results
    from suite.recorded import write_recorded

    results = load_results(Path(args.reports))
    if results is None:
        raise LensError(f"no {args.reports}/{RESULTS} yet: run the findings first (`./run findings`)")
    to = Path(args.to) if args.to else path_option(EXPECTED)
    write_recorded(results, to)
    print(f"recorded the verdicts of `{results.command}` in {to}: review `git diff {to}`")
    return 0


def _upgrade_check(args: argparse.Namespace) -> int:
    from suite import upgrade

    root = Path.cwd()
    if args.take:
        print(f"run: {upgrade.take(root)}")
        return 0
    return upgrade.check(root, args.candidates, args.extra, say=lambda line: print(f"run: {line}", flush=True))


if __name__ == "__main__":
    sys.exit(main())
