"""`python -m suite report` re-renders the report from findings.json; `python -m suite verdicts --record`
records a run's verdicts as the expected ones. Both run no model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lens.errors import LensError


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for bad input, with a one-line message)."""
    parser = argparse.ArgumentParser(prog="./run", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    p = sub.add_parser("report", help="re-render reports/findings.md from reports/findings.json")
    p.add_argument("--reports", default="reports", help="the reports folder (default: reports)")
    p.set_defaults(run=_report)
    p = sub.add_parser("verdicts", help="record the last run's verdicts as the expected ones")
    p.add_argument("--record", action="store_true", required=True,
                   help="write them to findings/expected_verdicts.toml (review the diff before committing)")
    p.add_argument("--reports", default="reports")
    p.add_argument("--to", default="findings/expected_verdicts.toml")
    p.set_defaults(run=_verdicts)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LensError as error:
        print(f"run: {error}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace) -> int:
    from suite.report import rerender

    print(rerender(Path(args.reports)))
    return 0


def _verdicts(args: argparse.Namespace) -> int:
    from suite.recorded import write_recorded
    from suite.report import load_results

    results = load_results(Path(args.reports))
    if results is None:
        raise LensError(f"no {args.reports}/findings.json yet: run the findings first (`./run findings`)")
    write_recorded(results, Path(args.to))
    print(f"recorded the verdicts of `{results['command']}` in {args.to}: review `git diff {args.to}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
