"""python -m alert_rules build --out DIR [--thresholds FILE] [--runbook-base-url URL]

Writes DIR/rules/<group>.yml (Prometheus rule files) and DIR/tests/alerts.test.yml (promtool unit
tests for them). Validates the thresholds file first: a bad value stops here, naming the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alert_rules.build import build
from alert_rules.thresholds import ThresholdsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alert_rules")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write rule files and their promtool tests")
    b.add_argument("--out", required=True, type=Path, help="output folder (rules/ and tests/ go under it)")
    b.add_argument("--thresholds", type=Path, default=None, help="thresholds file (default: the shipped one)")
    b.add_argument("--runbook-base-url", default=None,
                   help="prefix of runbook_url annotations (default: docs/runbooks)")
    args = parser.parse_args(argv)
    try:
        written = build(args.out, args.thresholds, args.runbook_base_url)
    except ThresholdsError as exc:
        print(f"alert_rules: thresholds rejected: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
