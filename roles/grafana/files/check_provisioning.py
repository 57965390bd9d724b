#!/usr/bin/python3
"""`validate:` for Grafana's config: a throwaway Grafana must start with the candidate file in place.

Grafana refuses to start on a broken grafana.ini or provisioning file, so a start is the real
check. The live config (grafana.ini and provisioning/) is copied to a temporary folder, the
candidate replaces the file it would overwrite, and a throwaway server runs on a loopback port
with an empty database. The candidate passes when /api/health answers, every provisioned
datasource is listed and every dashboard in the live dashboards folder is found by /api/search.
Ansible installs the file only on exit 0, so the live file and the running service stay as
they were otherwise.

Provisioning candidates are parsed first (JSON is YAML; hosts have no PyYAML). When the file is
installed for the first time there is no working one to protect: the service start that follows
is the check, which keeps a first converge quick.
Standard library only. The admin password comes from GF_SECURITY_ADMIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import base64
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, user: str, password: str) -> tuple[int, bytes]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})  # noqa: S310 - loopback URL
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback URL built here
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def provisioned_datasources(prov: Path) -> int:
    count = 0
    for path in (prov / "datasources").glob("*.y*ml"):
        count += len(json.loads(path.read_text()).get("datasources") or [])
    return count


def staged_start(args: argparse.Namespace, password: str) -> str | None:
    """None when Grafana starts with the candidate and provisions everything, else why not (with its log)."""
    work = Path(tempfile.mkdtemp(prefix="grafana-check-"))
    try:
        shutil.copy2(args.config_dir / "grafana.ini", work / "grafana.ini")
        shutil.copytree(args.config_dir / "provisioning", work / "provisioning")
        target = work / args.replaces.relative_to(args.config_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.candidate, target)
        prov = work / "provisioning"
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "GF_PATHS_DATA": str(work / "data"), "GF_PATHS_LOGS": str(work / "logs"),
               "GF_PATHS_PLUGINS": str(work / "plugins"), "GF_PATHS_PROVISIONING": str(prov),
               "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(port),
               "GF_SECURITY_ADMIN_PASSWORD": password, "GF_LOG_MODE": "console", "GF_LOG_LEVEL": "info"}
        log = work / "grafana.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([str(args.binary), "server", f"--homepath={args.homepath}",
                                     f"--config={work / 'grafana.ini'}"], env=env, cwd=work,
                                    stdout=fh, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            want_ds = provisioned_datasources(prov)
            want_dash = len(list(args.dashboards.glob("*.json")))
            deadline = time.monotonic() + args.timeout
            reason = f"no answer on /api/health within {args.timeout:.0f} s"
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    reason = f"Grafana exited with status {proc.returncode}"
                    break
                try:
                    ds_status, ds_body = get(f"{url}/api/datasources", args.admin_user, password)
                    s_status, s_body = get(f"{url}/api/search?type=dash-db", args.admin_user, password)
                except OSError:
                    time.sleep(1)
                    continue
                got_ds = len(json.loads(ds_body)) if ds_status == 200 else -1
                got_dash = len(json.loads(s_body)) if s_status == 200 else -1
                if got_ds == want_ds and got_dash == want_dash:
                    return None
                reason = (f"{got_ds} datasource(s) (want {want_ds}) and {got_dash} dashboard(s) (want {want_dash}) "
                          f"after the start (HTTP {ds_status}/{s_status})")
                time.sleep(1)
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            return f"{reason}; its log:\n{tail}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", type=Path, help="the rendered file (Ansible's %%s)")
    parser.add_argument("--replaces", type=Path, required=True, help="the live file the candidate would overwrite")
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--homepath", type=Path, required=True)
    parser.add_argument("--config-dir", type=Path, default=Path("/etc/grafana"))
    parser.add_argument("--dashboards", type=Path, default=Path("/var/lib/grafana/dashboards"))
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    if args.replaces.suffix in (".yaml", ".yml", ".json"):
        try:
            json.loads(args.candidate.read_text())
        except ValueError as exc:
            print(f"{args.replaces}: the candidate does not parse: {exc}", file=sys.stderr)
            return 1
    if not args.replaces.exists() or not (args.config_dir / "grafana.ini").exists() or not args.binary.exists():
        print(f"first install of {args.replaces}: nothing working to protect; the service start checks it")
        return 0
    password = os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "")
    if not password:
        print("GF_SECURITY_ADMIN_PASSWORD is not set: the role passes grafana_admin_password", file=sys.stderr)
        return 2
    problem = staged_start(args, password)
    if problem:
        print(f"{args.replaces} NOT installed: a Grafana with the candidate did not come up: {problem}",
              file=sys.stderr)
        return 1
    print(f"{args.replaces}: a Grafana with the candidate started and provisioned everything")
    return 0


if __name__ == "__main__":
    sys.exit(main())
