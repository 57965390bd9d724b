#!/usr/bin/python3
"""Install staged Grafana config and dashboards only after a throwaway Grafana started with them.

Grafana refuses to start on a broken provisioning file, so a staged start is the real check:
the staged grafana.ini, provisioning and dashboards run in a temporary server on a loopback port
with an empty database; only if it answers /api/health and lists every staged dashboard are the
files copied over the live ones. The live files and the running service are untouched otherwise.
Standard library only: hosts have python3 and nothing else.

Prints {"changed": bool}; exit 1 with the throwaway server's log when the check fails.
"""

from __future__ import annotations

import argparse
import base64
import filecmp
import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def differs(staging: Path, live: Path, exact: bool) -> bool:
    """True when a staged file is missing or different in live (or, if exact, live has extra files)."""
    staged, present = files_under(staging), files_under(live)
    if exact and present - staged:
        return True
    return any(rel not in present or not filecmp.cmp(staging / rel, live / rel, shallow=False) for rel in staged)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, password: str, user: str) -> tuple[int, bytes]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback URL built here
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def staged_start(args: argparse.Namespace, password: str) -> str | None:
    """None when the staged config starts and provisions every dashboard, else the reason and log."""
    work = Path(tempfile.mkdtemp(prefix="grafana-check-"))
    try:
        prov = work / "provisioning"
        shutil.copytree(args.staging / "provisioning", prov)
        # The provider points at the live dashboards folder; the check must load the staged ones.
        for provider in (prov / "dashboards").glob("*.y*ml"):
            provider.write_text(provider.read_text().replace(str(args.live_dashboards), str(args.staging_dashboards)))
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "GF_PATHS_DATA": str(work / "data"), "GF_PATHS_LOGS": str(work / "logs"),
               "GF_PATHS_PLUGINS": str(work / "plugins"), "GF_PATHS_PROVISIONING": str(prov),
               "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(port),
               "GF_SECURITY_ADMIN_PASSWORD": password, "GF_LOG_MODE": "console", "GF_LOG_LEVEL": "info"}
        log = work / "grafana.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([str(args.binary), "server", f"--homepath={args.homepath}",
                                     f"--config={args.staging / 'grafana.ini'}"], env=env, cwd=work,
                                    stdout=fh, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            expected = len(list(args.staging_dashboards.glob("*.json")))
            deadline = time.monotonic() + args.timeout
            reason = f"no answer on /api/health within {args.timeout} s"
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    reason = f"the staged Grafana exited with status {proc.returncode}"
                    break
                try:
                    status, body = get(f"{url}/api/search?type=dash-db", password, args.admin_user)
                except OSError:
                    time.sleep(1)
                    continue
                found = len(json.loads(body)) if status == 200 else -1
                if found == expected:
                    return None
                reason = f"/api/search answered {status} with {found} dashboard(s), expected {expected}"
                time.sleep(1)
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
            return f"{reason}; staged Grafana log:\n{tail}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install(staging: Path, live: Path, gid: int, exact: bool) -> None:
    live.mkdir(parents=True, exist_ok=True)
    staged = files_under(staging)
    for rel in sorted(staged):
        dest = live / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.new")
        shutil.copyfile(staging / rel, tmp)
        os.chown(tmp, 0, gid)
        tmp.chmod(0o640)
        os.replace(tmp, dest)
    if exact:
        for rel in files_under(live) - staged:
            (live / rel).unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--homepath", type=Path, required=True)
    parser.add_argument("--staging", type=Path, required=True, help="staged grafana.ini and provisioning/")
    parser.add_argument("--live", type=Path, required=True, help="where grafana.ini and provisioning/ are read")
    parser.add_argument("--staging-dashboards", type=Path, required=True)
    parser.add_argument("--live-dashboards", type=Path, required=True)
    parser.add_argument("--group", default="grafana", help="group that may read the installed files")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    password = os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "")
    if not password:
        print("GF_SECURITY_ADMIN_PASSWORD is not set: the role passes grafana_admin_password", file=sys.stderr)
        return 2
    config_changed = differs(args.staging, args.live, exact=False)
    dashboards_changed = differs(args.staging_dashboards, args.live_dashboards, exact=True)
    if not (config_changed or dashboards_changed):
        print(json.dumps({"changed": False}))
        return 0
    problem = staged_start(args, password)
    if problem:
        print(f"the staged Grafana configuration was NOT installed: {problem}", file=sys.stderr)
        return 1
    gid = grp.getgrnam(args.group).gr_gid
    install(args.staging, args.live, gid, exact=False)
    install(args.staging_dashboards, args.live_dashboards, gid, exact=True)
    print(json.dumps({"changed": True, "config": config_changed, "dashboards": dashboards_changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
