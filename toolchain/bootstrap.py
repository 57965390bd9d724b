"""`make bootstrap`: make this machine ready to run ScaleMart Ops.

Idempotent; every step prints how long it took and skips work that is already done:
Debian packages, the Docker engine, the pinned virtualenv, tools built from the Go module
proxy, the Pulumi language host and the base host image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolchain import gotools, image  # noqa: E402
from toolchain.common import CACHE, ROOT, ToolchainError, digest, link, log, need, run, step  # noqa: E402

# Debian packages for the control machine. redis-server and the prometheus packages give the
# tests a real Redis and promtool/amtool, and the exporters the no-data check scrapes (the blackbox exporter
# and mtail included); golang-go only when no Go toolchain is present.
APT_PACKAGES = [
    "docker.io",
    "debootstrap",
    "jq",
    "git",
    "gcc",
    "libc6-dev",
    "make",
    "rsync",
    "redis-server",
    "redis-tools",
    "prometheus",
    "prometheus-alertmanager",
    "nginx-light",
    "prometheus-node-exporter",
    "prometheus-redis-exporter",
    "prometheus-mongodb-exporter",
    "prometheus-nginx-exporter",
    "prometheus-blackbox-exporter",
    "mtail",
    "wrk",
    # The browser for the UI tests (selenium drives it through chromedriver; nothing downloads a browser).
    "chromium",
    "chromium-driver",
]


def apt_packages() -> None:
    wanted = list(APT_PACKAGES)
    if shutil.which("go") is None:
        wanted.append("golang-go")
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *wanted], capture_output=True, text=True, check=False
    )
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith("install ok installed")}
    missing = [p for p in wanted if p not in installed]
    if not missing:
        log(f"debian packages: all {len(wanted)} present")
        return
    if os.geteuid() != 0:
        raise ToolchainError(
            f"Debian packages missing: {' '.join(missing)}", f"sudo apt-get install -y {' '.join(missing)}"
        )
    log(f"debian packages: installing {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # The control machine may not run systemd; keep package scripts from starting services.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        run(
            ["apt-get", "update", "-q"],
            env=env,
            log_file=CACHE / "logs" / "apt-update.log",
            fix="check that the Debian mirror is reachable, then rerun `make bootstrap`",
        )
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            log_file=CACHE / "logs" / "apt-install.log",
            fix=f"apt-get install -y {' '.join(missing)}",
        )
    finally:
        if created_policy:
            policy.unlink()


# The engine settings the bootstrap owns. Without the userland proxy, a published port is an iptables
# DNAT rule instead of a docker-proxy process copying every byte: a third of a core at 1,500 req/s
# through the balancer here (docs/benchmarks.md), and two file descriptors per client connection,
# which a 10,000-user flash sale would run out of.
ENGINE_SETTINGS = {"userland-proxy": False}
DAEMON_JSON = Path(os.environ.get("SCALEMART_DOCKER_DAEMON_JSON", "/etc/docker/daemon.json"))


def engine_settings() -> bool:
    """Write ENGINE_SETTINGS into the local engine's daemon.json (other keys kept); True when it changed."""
    current: dict[str, object] = {}
    if DAEMON_JSON.exists():
        try:
            current = json.loads(DAEMON_JSON.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise ToolchainError(f"{DAEMON_JSON} is not JSON ({exc})", f"fix or remove {DAEMON_JSON}") from None
        if not isinstance(current, dict):
            raise ToolchainError(f"{DAEMON_JSON} is not a JSON object", f"fix or remove {DAEMON_JSON}")
    if all(current.get(k) == v for k, v in ENGINE_SETTINGS.items()):
        return False
    if os.geteuid() != 0:
        log(
            f"docker engine: not root, so {DAEMON_JSON} keeps its settings; published ports go through docker-proxy "
            f"(fix: add {json.dumps(ENGINE_SETTINGS)} to it as root and restart the engine)"
        )
        return False
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps({**current, **ENGINE_SETTINGS}, indent=2) + "\n")
    log(f"docker engine: {DAEMON_JSON} now sets {json.dumps(ENGINE_SETTINGS)}")
    return True


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _start_dockerd() -> None:
    if shutil.which("dockerd") is None:
        raise ToolchainError("dockerd is not installed", "apt-get install -y docker.io")
    log_path = CACHE / "logs" / "dockerd.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"docker engine: starting dockerd (log: {log_path})")
    with log_path.open("ab") as fh:
        subprocess.Popen(["dockerd"], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(1)
    raise ToolchainError("dockerd did not answer within 60 s", f"read {log_path}")


def _restart_local_engine() -> None:
    """Restart a dockerd this machine runs, so it reads the new settings; only when no container runs."""
    running = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, check=False).stdout.split()
    pids = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    if running or not pids:
        why = f"{len(running)} containers are running" if running else "the engine is not a local dockerd"
        log(
            f"docker engine: the new settings apply at the engine's next start ({why}; to apply them now, "
            "`make down` every environment, stop dockerd and rerun `make bootstrap`)"
        )
        return
    log("docker engine: restarting dockerd to apply the settings (no container was running)")
    subprocess.run(["kill", "-TERM", *pids], check=False)
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).returncode == 0
    ):
        time.sleep(0.5)
    _start_dockerd()


def docker_engine() -> None:
    need("docker", "apt-get install -y docker.io")
    remote = bool(os.environ.get("DOCKER_HOST"))
    changed = False if remote else engine_settings()
    if _engine_answers():
        log("docker engine: answering")
        if changed:
            _restart_local_engine()
        return
    if remote:
        raise ToolchainError(
            f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}",
            "start the remote engine or unset DOCKER_HOST",
        )
    _start_dockerd()


def pinned_requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def virtualenv() -> Path:
    reqs = pinned_requirements()
    venv = CACHE / f"venv-{digest(sys.version, *reqs)}"
    marker = venv / ".complete"
    if not marker.exists():
        log(f"virtualenv: creating {venv} ({len(reqs)} pinned packages)")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv], fix="apt-get install -y python3-venv")
        req_file = venv / "requirements.txt"
        req_file.write_text("\n".join(reqs) + "\n")
        run(
            [venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "-r", req_file],
            log_file=CACHE / "logs" / "pip-install.log",
            fix="check the pins in pyproject.toml, then rerun `make bootstrap`",
        )
        marker.write_text("ok\n")
    else:
        log(f"virtualenv: up to date ({venv.name})")
    link(venv, ROOT / ".venv")
    return venv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-image", action="store_true", help="do not build the base host image")
    parser.add_argument("--only", choices=["apt", "docker", "venv", "tools", "image"], help="run one step only")
    args = parser.parse_args()
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        steps = [
            ("apt", "1/5 debian packages", apt_packages),
            ("docker", "2/5 docker engine", docker_engine),
            ("venv", "3/5 python virtualenv", virtualenv),
            ("tools", "4/5 tools from the Go module proxy", gotools.build_all),
            ("image", "5/5 base host image", image.build),
        ]
        for key, title, fn in steps:
            if args.only and key != args.only:
                continue
            if key == "image" and args.skip_image:
                continue
            with step(title):
                fn()
    except ToolchainError as err:
        print(f"bootstrap failed: {err.line()}", file=sys.stderr)
        return 1
    log(f"ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
