"""The wheel builder: a Python project's wheel plus a wheelhouse of its pinned dependencies, in one tar.

Hosts have no package index, so everything `pip install --no-index` needs goes into the bundle.
The app and the backups tool are both bundled here (ops/build.py). Dependency wheels are cached
in the machine cache by the hash of the project's pyproject.toml, the host's Python and pip (they
change only with the pins); the bundle is named after the hash of the project's sources.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import asdict, dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SKIP_DIRS = {"__pycache__", "build", "bench", ".pytest_cache", ".mypy_cache", "tests"}


class WheelError(RuntimeError):
    """A bundle could not be built; the message says what to do."""


@dataclass(frozen=True)
class Bundle:
    """What a role needs to install a bundle: `release.json` beside the tar."""

    name: str
    version: str
    release: str
    tarball: str
    pip_wheel: str
    python: str

    @classmethod
    def read(cls, folder: Path) -> Bundle:
        return cls(**json.loads((folder / "release.json").read_text()))


def source_files(project: Path) -> list[Path]:
    """The files a project's wheel is built from: everything but caches, tests and build leftovers."""
    files = []
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project).parts
        if (
            path.is_file()
            and not SKIP_DIRS.intersection(rel)
            and path.suffix != ".pyc"
            and not any(p.endswith(".egg-info") for p in rel)
        ):
            files.append(path)
    return files


def digest(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def pip(python: str, *args: str) -> None:
    cmd = [python, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise WheelError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}); check that the package index is "
            f"reachable from the control machine and the pins exist:\n{proc.stdout}\n{proc.stderr}"
        )


def missing_for_host(deps: Path, host_python: str) -> list[str]:
    """Requirements the host's interpreter needs that the control machine's did not.

    Markers differ between patch releases (redis needs async-timeout below 3.11.3), and pip
    evaluates them for the interpreter it runs on, so the wheelhouse is completed for the host's.
    """
    env: dict[str, str] = {
        **cast(dict[str, str], default_environment()),
        "python_full_version": host_python,
        "python_version": ".".join(host_python.split(".")[:2]),
        "extra": "",
    }
    have = {canonicalize_name(whl.name.split("-")[0]) for whl in deps.glob("*.whl")}
    missing: dict[str, str] = {}
    for whl in deps.glob("*.whl"):
        with zipfile.ZipFile(whl) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            for line in zf.read(name).decode().splitlines():
                if not line.startswith("Requires-Dist: "):
                    continue
                req = Requirement(line.removeprefix("Requires-Dist: "))
                if canonicalize_name(req.name) in have or (req.marker and not req.marker.evaluate(env)):
                    continue
                missing[canonicalize_name(req.name)] = f"{req.name}{req.specifier}"
    return sorted(missing.values())


def dependencies(project: Path, cache: Path, python: str, host_python: str) -> Path:
    """The project's dependency wheels for the host's Python, from the machine cache when the pins are known."""
    pip_version = installed_version("pip")
    deps = cache / f"deps-{digest([project / 'pyproject.toml'], project)}-py{host_python}-pip{pip_version}"
    cache.mkdir(parents=True, exist_ok=True)
    # One builder at a time per wheelhouse: two test workers, or two clones, may build the same pins.
    with open(cache / f"{deps.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (deps / ".complete").exists():
            _download(project, deps, python, host_python, pip_version)
    return deps


def _download(project: Path, deps: Path, python: str, host_python: str, pip_version: str) -> None:
    shutil.rmtree(deps, ignore_errors=True)
    # Same interpreter version and platform as the hosts (Debian 12, CPython 3.11), so the
    # wheels pip picks here are the ones the hosts can install.
    with tempfile.TemporaryDirectory(prefix="scalemart-src-") as tmp:
        copy = _copy(project, Path(tmp))
        pip(python, "wheel", "--quiet", "--wheel-dir", str(deps), str(copy))
    name = canonicalize_name(_project(project)["name"]).replace("-", "_")
    for own in deps.glob(f"{name}-*.whl"):
        own.unlink()
    for _ in range(5):
        missing = missing_for_host(deps, host_python)
        if not missing:
            break
        pip(
            python,
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            host_python,
            "--dest",
            str(deps),
            *missing,
        )
    else:
        raise WheelError(f"the wheelhouse for Python {host_python} is still missing {missing}")
    # The hosts' venvs are created without pip (ensurepip is slow and needs python3-venv);
    # pip runs from its wheel instead and installs itself with the rest.
    pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(deps), f"pip=={pip_version}")
    (deps / ".complete").write_text("\n")


def _project(project: Path) -> dict[str, str]:
    return cast(dict[str, str], tomllib.loads((project / "pyproject.toml").read_text())["project"])


def _copy(project: Path, tmp: Path) -> Path:
    # A copy, so the build leaves no build/ or egg-info behind in the source tree.
    copy = tmp / "src"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.egg-info", "*.pyc"))
    return copy


def bundle(project: Path, out: Path, cache: Path, host_python: str, python: str) -> Bundle:
    """Write `out/<name>-<release>.tar` and `out/release.json` for the hosts' Python `host_python`."""
    if not (project / "pyproject.toml").is_file():
        raise WheelError(f"{project} has no pyproject.toml: point the build at a Python project")
    meta = _project(project)
    pip_version = installed_version("pip")
    key = digest(source_files(project), project) + "-py" + host_python.replace(".", "") + "-pip" + pip_version
    name, version = canonicalize_name(meta["name"]), meta["version"]
    result = Bundle(
        name=name,
        version=version,
        release=f"{version}-{key}",
        tarball=f"{name}-{version}-{key}.tar",
        pip_wheel=f"pip-{pip_version}-py3-none-any.whl",
        python=host_python,
    )
    deps = dependencies(project, cache, python, host_python)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scalemart-wheel-") as tmp:
        wheels = Path(tmp) / "wheels"
        pip(python, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(_copy(project, Path(tmp))))
        partial = out / (result.tarball + ".partial")
        with tarfile.open(partial, "w") as tar:
            for whl in sorted([*deps.glob("*.whl"), *wheels.glob("*.whl")]):
                tar.add(whl, arcname=whl.name)
        os.replace(partial, out / result.tarball)
    (out / "release.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
