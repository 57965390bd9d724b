"""The build phase: every artifact the roles install, built once into `build/<env>/artifacts/`.

    python -m ops build ENV        (make build ENV=…; `make up` runs it before the stack)

    rules/        Prometheus rule files (rules/*.yml) and their promtool tests (tests/*.yml)
    dashboards/   the Grafana JSON and, in perses/, the Perses project, datasource and dashboards
    alerting/     the alert_rules package: it renders alertmanager.yml at configure time (the
                  recipients and their secrets go through stdin, never to disk) and holds the SMS notifier
    app/          the app's wheel and wheelhouse in one tar, and release.json (ops/wheels.py)
    backups/      the backups tool's wheel and wheelhouse, by the same wheel builder
    tools/        the binaries that are not in Debian (bin/) and Perses' CUE schemas, linked
                  from the machine cache where `make bootstrap` built them

Roles only install these: their inputs point here (playbooks/group_vars), and nothing in a role
reaches into the repository. Each artifact records the hash of its inputs in `.inputs`; a
second run with the same inputs rebuilds nothing and says so. An artifact is built into a
scratch folder and replaces the previous one only when its build succeeded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from alert_rules.build import TEST_COMPRESS_VAR
from ops import wheels
from toolchain.common import BUILD, CACHE, ROOT, TOOLS_BIN, tool_env

STAMP = ".inputs"
HOST_PYTHON_VAR = "SCALEMART_HOST_PYTHON"
# The binaries not in Debian, by the role that installs them (the toolchain builds them into the cache).
TOOLS = ("ferretdb", "mongodb_exporter", "mongodump", "mongorestore")
PERSES_TOOLS = ROOT / ".tools" / "perses"
PERSES_BINARIES = ("perses", "percli", "perses-check-config")


class BuildError(RuntimeError):
    """An artifact could not be built; the message names it and what to do."""


def artifacts_dir(env: str) -> Path:
    return BUILD / env / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One folder under artifacts/: the files its content follows from, and how to write it."""

    name: str
    inputs: Callable[[], Iterable[Path | str]]
    make: Callable[[Path], None]

    def key(self) -> str:
        h = hashlib.sha256()
        for item in self.inputs():
            if isinstance(item, Path):
                h.update(str(item.relative_to(ROOT) if item.is_relative_to(ROOT) else item).encode() + b"\0")
                h.update(item.read_bytes() if item.is_file() else b"-")
            else:
                h.update(item.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]


def tree(*folders: str) -> list[Path]:
    """Every source file under the repository folders (caches and build leftovers left out)."""
    out: list[Path] = []
    for folder in folders:
        out += [p for p in wheels.source_files(ROOT / folder) if p.suffix not in {".png", ".md"}]
    return out


def python_cmd(*args: str | Path) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        argv = [sys.executable, *[str(a).replace("{out}", str(out)) for a in args]]
        env = tool_env()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(argv[1:4])} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")

    return run


def host_python(image: str) -> str:
    """The Python version of the hosts' image (X.Y.Z): wheels and markers are chosen for it.

    Read once per image id from the image itself and remembered in the machine cache;
    $SCALEMART_HOST_PYTHON names it instead for hosts that do not run the image (SSH hosts).
    """
    if os.environ.get(HOST_PYTHON_VAR):
        return os.environ[HOST_PYTHON_VAR]
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True, check=False
    )
    if inspect.returncode != 0:
        raise BuildError(f"the hosts' image {image} is not on this Docker engine: run `make bootstrap`")
    memo = CACHE / "images" / f"{inspect.stdout.strip().removeprefix('sha256:')[:16]}.python"
    if memo.exists():
        return memo.read_text().strip()
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            image,
            "-c",
            "import platform; print(platform.python_version())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"cannot read the Python version of {image}: {proc.stderr.strip()}")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(proc.stdout.strip() + "\n")
    return proc.stdout.strip()


def bundle(project: str, python_version: Callable[[], str]) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        try:
            wheels.bundle(ROOT / project, out, CACHE / "wheelhouse", python_version(), sys.executable)
        except wheels.WheelError as exc:
            raise BuildError(str(exc)) from None

    return make


def package_copy(folder: str) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        for src in tree(folder):
            dest = out / folder / src.relative_to(ROOT / folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)

    return make


def tool_links(out: Path) -> None:
    (out / "bin").mkdir(parents=True)
    sources = {name: TOOLS_BIN / name for name in TOOLS}
    sources |= {name: PERSES_TOOLS / "bin" / name for name in PERSES_BINARIES}
    missing = [str(p) for p in [*sources.values(), PERSES_TOOLS / "cue.tar.gz"] if not p.exists()]
    if missing:
        raise BuildError(f"missing on the control machine: {', '.join(missing)}; run `make bootstrap`")
    for name, src in sources.items():
        (out / "bin" / name).symlink_to(src.resolve())
    (out / "cue.tar.gz").symlink_to((PERSES_TOOLS / "cue.tar.gz").resolve())


def tool_inputs() -> list[str]:
    # The cache folders are named after what they hold, so their real paths are the inputs.
    paths = [TOOLS_BIN / n for n in TOOLS] + [PERSES_TOOLS / "bin" / n for n in PERSES_BINARIES]
    return [str(p.resolve()) for p in [*paths, PERSES_TOOLS / "cue.tar.gz"]]


def artifacts(image: str) -> list[Artifact]:
    memo: dict[str, str] = {}

    def python_version() -> str:
        if "v" not in memo:
            memo["v"] = host_python(image)
        return memo["v"]

    alerting = tree("alert_rules")
    # The end-to-end test's compressed SLO windows change the rules, so they are one of the rules' inputs.
    compressed = f"{TEST_COMPRESS_VAR}={os.environ.get(TEST_COMPRESS_VAR, '')}"
    return [
        Artifact("rules", lambda: [*alerting, compressed], python_cmd("-m", "alert_rules", "build", "--out", "{out}")),
        Artifact(
            "dashboards",
            lambda: [*tree("dashboards"), *alerting, *tool_inputs()],
            python_cmd("-m", "dashboards", "build", "--out", "{out}"),
        ),
        Artifact("alerting", lambda: alerting, package_copy("alert_rules")),
        Artifact("app", lambda: [*tree("app"), python_version()], bundle("app", python_version)),
        Artifact("backups", lambda: [*tree("backups"), python_version()], bundle("backups", python_version)),
        Artifact("tools", tool_inputs, tool_links),
    ]


def build_one(artifact: Artifact, root: Path) -> bool:
    """Build `artifact` under `root` unless its inputs are unchanged; return whether it was built."""
    final = root / artifact.name
    key = artifact.key()
    stamp = final / STAMP
    if stamp.exists() and stamp.read_text().strip() == key:
        print(f"    {artifact.name:<11} unchanged (inputs {key})", flush=True)
        return False
    start = time.monotonic()
    scratch = root / f".{artifact.name}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        artifact.make(scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    (scratch / STAMP).write_text(key + "\n")
    old = root / f".{artifact.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    scratch.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    print(f"    {artifact.name:<11} built in {time.monotonic() - start:.1f} s (inputs {key})", flush=True)
    return True


def build(env: str, image: str, root: Path | None = None) -> list[str]:
    """Build every artifact of `env`; return the names that were rebuilt."""
    root = root or artifacts_dir(env)
    root.mkdir(parents=True, exist_ok=True)
    built = [a.name for a in artifacts(image) if build_one(a, root)]
    print(
        f"    {'rebuilt: ' + ', '.join(built) if built else 'nothing rebuilt: every input is unchanged'} → {root}",
        flush=True,
    )
    return built
