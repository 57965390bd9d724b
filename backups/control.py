"""`make backup ENV=…` / `make restore ENV=… FROM=<archive> [FORCE=1]` on the control machine:
runs playbooks/backup.yml or playbooks/restore.yml against the environment's generated inventory.
(Control machine only: the data host never imports this module.)"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from ops import secrets
from ops.__main__ import ENVIRONMENTS, ROOT, inventory, playbook_cmd
from toolchain.common import tool_env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backups.control", description=__doc__)
    parser.add_argument("action", choices=["backup", "restore"])
    parser.add_argument("env")
    parser.add_argument("archive", nargs="?", default="", help="restore: archive name on the data host, or a path")
    parser.add_argument("--force", action="store_true", help="restore: accept another environment's archive")
    args = parser.parse_args(argv)
    if args.env not in ENVIRONMENTS:
        print(f"unknown environment {args.env!r}: use ENV={'|'.join(ENVIRONMENTS)}", file=sys.stderr)
        return 2
    if not inventory(args.env).exists():
        print(
            f"{inventory(args.env)} is missing: bring the environment up first (make up ENV={args.env})",
            file=sys.stderr,
        )
        return 2
    extra: list[str] = []
    if args.action == "restore":
        if not args.archive:
            print(
                f"name the archive: make restore ENV={args.env} FROM=<archive> (see `make backup` output, or "
                "`python -m backups list` on the data host)",
                file=sys.stderr,
            )
            return 2
        archive = os.path.abspath(args.archive) if os.path.exists(args.archive) else args.archive
        extra = ["-e", f"archive={archive}", "-e", f"force={'true' if args.force else 'false'}"]
    secrets.vault_password_file(args.env)
    cmd = [str(c) for c in playbook_cmd(args.env, f"{args.action}.yml", *extra)]
    return subprocess.run(cmd, cwd=ROOT, env=tool_env()).returncode


if __name__ == "__main__":
    sys.exit(main())
