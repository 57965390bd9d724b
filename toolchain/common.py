"""Shared helpers for the toolchain: paths, steps with timing, and commands that fail clearly.

Standard library only: this runs before the virtualenv exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cache lives outside the work tree so that a fresh clone on the same machine (CI) reuses
# what an earlier run built; `.venv` and `.tools` in the tree are symlinks into it.
CACHE = Path(os.environ.get("SCALEMART_CACHE", Path.home() / ".cache" / "scalemart-ops"))
TOOLS_BIN = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"
BUILD = ROOT / "build"


def tool_path(path: str | None = None) -> str:
    """PATH with the project's tools and venv first: the one place that says where they are."""
    return f"{TOOLS_BIN}:{VENV_BIN}:{os.environ.get('PATH', '') if path is None else path}"


def tool_settings() -> dict[str, str]:
    """What every command the project runs needs besides its arguments (make exports the same)."""
    return {
        "PATH": tool_path(),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PYTHONUNBUFFERED": "1",
    }


def tool_env() -> dict[str, str]:
    """This process's environment with tool_settings() over it, for a subprocess."""
    return {**os.environ, **tool_settings()}


class ToolchainError(RuntimeError):
    """A failure with a one-line explanation and the command that fixes it."""

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def line(self) -> str:
        return f"{self.what}" + (f" — fix: {self.fix}" if self.fix else "")


def log(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    start = time.monotonic()
    log(f"{name} ...")
    yield
    log(f"{name}: done in {time.monotonic() - start:.1f} s")


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    fix: str = "",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise ToolchainError with its tail of output."""
    argv = [str(c) for c in cmd]
    full_env = {**os.environ, **(env or {})}
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("w") as fh:
            proc = subprocess.run(
                argv, cwd=cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT, text=True, check=False
            )
        if proc.returncode != 0:
            tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
            sys.stderr.write(tail)
            raise ToolchainError(f"`{' '.join(argv[:4])} …` failed (exit {proc.returncode}); full log: {log_file}", fix)
        return proc
    proc = subprocess.run(argv, cwd=cwd, env=full_env, text=True, check=False, capture_output=capture)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write((proc.stdout or "")[-2000:] + (proc.stderr or "")[-2000:])
        raise ToolchainError(f"`{' '.join(argv[:4])} …` failed (exit {proc.returncode})", fix)
    return proc


def need(binary: str, fix: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ToolchainError(f"`{binary}` is not installed", fix)
    return path


def digest(*parts: bytes | str | Path, length: int = 12) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.read_bytes())
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(part)
    return h.hexdigest()[:length]


def link(target: Path, name: Path) -> None:
    """Point the symlink `name` at `target`, replacing whatever was there."""
    name.parent.mkdir(parents=True, exist_ok=True)
    if name.is_symlink() or name.is_file():
        if name.is_symlink() and Path(os.readlink(name)) == target:
            return
        name.unlink()
    elif name.is_dir():
        shutil.rmtree(name)
    name.symlink_to(target)


if __name__ == "__main__":
    # `python3 toolchain/common.py NAME`: the Makefile reads its exports from tool_settings().
    print(tool_settings()[sys.argv[1]])
