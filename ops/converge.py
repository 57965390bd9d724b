"""Whether `make up` must run the playbooks again: a warm `up` skips a converge that cannot change anything.

The configure phase is a function of its inputs: the playbooks and roles, the generated inventory,
the vault, the user's vars file, the artifacts (their `.inputs` stamps), the control machine's
Ansible, and the hosts themselves. After a converge succeeds, the hash of all of them is written to
`build/<env>/converged.json`. The next `up` skips the playbooks when the hash is the same, so a warm
`up` costs the build check, the stack refresh and the verify suite.

A host counts by its container id and start time: a recreated or restarted host converges again.
Hosts reached over SSH carry no such identity, so an environment with one always converges. The
verify suite still runs after a skipped converge; when it fails, `up` converges and verifies again
(ops/__main__.py), and `FORCE=1` converges regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from ops.inventory import Inventory
from toolchain.common import BUILD, ROOT

STATE = "converged.json"
DOCKER_CONNECTION = "community.docker.docker"


def _files(*folders: Path) -> Iterable[Path]:
    for folder in folders:
        yield from sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def host_identity(inventory: Path) -> str | None:
    """Container id and start time of every host, or None when a host is not a local container."""
    found = Inventory.load(inventory).hosts()
    if not found or any(v.get("ansible_connection") != DOCKER_CONNECTION for v in found.values()):
        return None
    names = sorted({str(v.get("ansible_host", k)) for k, v in found.items()})
    proc = subprocess.run(
        ["docker", "inspect", "--format", "{{.Name}} {{.Id}} {{.State.StartedAt}}", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else None


def key(env: str, inventory: Path, vault: Path, artifacts: Path) -> str | None:
    """The hash of everything a converge depends on, or None when it cannot be known."""
    identity = host_identity(inventory)
    if identity is None:
        return None
    h = hashlib.sha256(identity.encode())
    extra = os.environ.get("SCALEMART_EXTRA_VARS")
    inputs = [
        *_files(ROOT / "playbooks", ROOT / "roles"),
        ROOT / "ansible.cfg",
        inventory,
        vault,
        *([Path(extra)] if extra else []),
        *sorted(artifacts.glob("*/.inputs")),
    ]
    for path in inputs:
        h.update(str(path).encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-") + b"\0")
    # Another Ansible (a new venv) may converge differently.
    h.update(str(Path(sys.executable).resolve()).encode())
    return h.hexdigest()[:16]


def state(env: str) -> Path:
    return BUILD / env / STATE


def unchanged(env: str, current: str | None) -> str | None:
    """When the last converge had the same inputs: the time it finished; else None."""
    path = state(env)
    if current is None or not path.exists():
        return None
    try:
        last = json.loads(path.read_text())
    except ValueError:
        return None
    return str(last.get("at")) if last.get("key") == current else None


def record(env: str, current: str | None) -> None:
    path = state(env)
    if current is None:
        path.unlink(missing_ok=True)
        return
    path.write_text(json.dumps({"key": current, "at": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")


def forget(env: str) -> None:
    state(env).unlink(missing_ok=True)
