"""Command line of the alerting content.

python -m alert_rules build --out DIR [--thresholds FILE] [--runbook-base-url URL]
    Writes DIR/rules/<group>.yml (Prometheus rule files) and DIR/tests/alerts.test.yml (promtool
    unit tests for them). Validates the thresholds file first: a bad value stops here, naming the key.
python -m alert_rules alertmanager --recipients FILE|- --out FILE
    Renders alertmanager.yml from a recipients YAML/JSON (or stdin, so secrets need not touch disk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from alert_rules.alertmanager import RecipientsError, render
from alert_rules.build import build
from alert_rules.thresholds import ThresholdsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alert_rules")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write rule files and their promtool tests")
    b.add_argument("--out", required=True, type=Path, help="output folder (rules/ and tests/ go under it)")
    b.add_argument("--thresholds", type=Path, default=None, help="thresholds file (default: the shipped one)")
    b.add_argument(
        "--runbook-base-url", default=None, help="prefix of runbook_url annotations (default: docs/runbooks)"
    )
    a = sub.add_parser("alertmanager", help="render alertmanager.yml from recipients")
    a.add_argument("--recipients", required=True, help="recipients YAML/JSON file, or - for stdin")
    a.add_argument("--out", required=True, type=Path, help="where to write alertmanager.yml")
    args = parser.parse_args(argv)
    if args.command == "alertmanager":
        text = sys.stdin.read() if args.recipients == "-" else Path(args.recipients).read_text(encoding="utf-8")
        try:
            rendered = render(yaml.safe_load(text))
        except RecipientsError as exc:
            print(f"alert_rules: {exc}", file=sys.stderr)
            return 2
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(rendered, encoding="utf-8")
        args.out.chmod(0o600)
        print(args.out)
        return 0
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
