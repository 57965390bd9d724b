"""python -m dashboards build --out DIR [--thresholds FILE]: Grafana JSON, and Perses resources in DIR/perses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alert_rules.thresholds import ThresholdsError
from dashboards import build
from dashboards.perses import ConversionError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write dashboard JSON files")
    b.add_argument("--out", type=Path, default=Path("build/dashboards"))
    b.add_argument("--thresholds", type=Path, default=None, help="thresholds file (default: the shipped one)")
    args = parser.parse_args(argv)
    try:
        written = build(args.out, args.thresholds)
    except ThresholdsError as exc:
        print(f"dashboards: thresholds rejected: {exc}", file=sys.stderr)
        return 2
    except ConversionError as exc:
        print(f"dashboards: not converted for Perses, nothing written: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
