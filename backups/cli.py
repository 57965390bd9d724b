"""python -m backups [--config PATH] backup | restore ARCHIVE [--force] | verify ARCHIVE | list | prune
| decrypt-config ARCHIVE --out DIR

Exit codes: 0 ok; 1 failed; 2 bad config or usage; 3 archive corrupt (nothing touched);
4 archive from another environment (nothing touched); 5 restored but the counts or the app's
reconcile disagree; 6 backup stored but the off-site copy failed; 7 another run holds the lock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from backups import config, jobs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backups", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help=f"config file (default: ${config.CONFIG_ENV} or {config.DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="take a backup, then apply retention and the off-site copy")
    p = sub.add_parser("restore", help="verify, stop the app, restore MongoDB and Redis, start, reconcile")
    p.add_argument("archive", help="file name in the backup dir, or a path")
    p.add_argument("--force", action="store_true", help="restore an archive of another environment")
    p.add_argument(
        "--no-hooks",
        action="store_true",
        help="skip the stop/start/reconcile hooks (the restore playbook runs them on the app hosts)",
    )
    p = sub.add_parser("verify", help="check an archive's checksums and environment; touches nothing")
    p.add_argument("archive")
    p.add_argument("--force", action="store_true", help="accept an archive of another environment")
    sub.add_parser("list", help="archives in the backup dir, with age and size")
    sub.add_parser("prune", help="apply retention now (only if the newest archive is recent and verifies)")
    p = sub.add_parser("decrypt-config", help="write the archive's environment config (decrypted) under a directory")
    p.add_argument("archive")
    p.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return jobs.USAGE
    try:
        if args.command == "backup":
            return jobs.backup(cfg).code
        if args.command == "restore":
            return jobs.restore(cfg, args.archive, force=args.force, run_hooks=not args.no_hooks)
        if args.command == "verify":
            return jobs.verify(cfg, args.archive, args.force)
        if args.command == "list":
            return jobs.list_archives(cfg)
        if args.command == "prune":
            return jobs.prune(cfg)
        return jobs.decrypt_config(cfg, args.archive, args.out)
    except jobs.Busy as err:
        print(str(err), file=sys.stderr)
        return jobs.BUSY
    except config.ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return jobs.USAGE
