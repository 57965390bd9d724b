"""Build the ScaleMart release bundle on the control machine: the app's wheel plus its dependencies.

Hosts have no package index, so everything `pip install --no-index` needs goes into one tar.
Dependency wheels are cached by the hash of app/pyproject.toml (they change only with the pins),
the app wheel by the hash of its sources; an unchanged tree builds nothing and prints
`"changed": false`, which keeps a second `make up` at changed=0.

Prints one JSON line: {"changed", "release", "version", "tarball"}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

KEEP_BUNDLES = 3
SKIP_DIRS = {"__pycache__", "build", "bench", ".pytest_cache", ".mypy_cache"}


def source_files(src: Path) -> list[Path]:
    files = [src / "pyproject.toml"]
    for path in sorted((src / "scalemart").rglob("*")):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(src).parts) and path.suffix != ".pyc":
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
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); check that the package index is reachable "
                 f"from the control machine and the pins in app/pyproject.toml exist:\n{proc.stdout}\n{proc.stderr}")


def missing_for_host(deps: Path, host_python: str) -> list[str]:
    """Requirements the host's interpreter needs that the control machine's did not.

    Markers differ between patch releases (redis needs async-timeout below 3.11.3), and pip
    evaluates them for the interpreter it runs on, so the wheelhouse is completed for the host's.
    """
    env: dict[str, str] = {**cast(dict[str, str], default_environment()), "python_full_version": host_python,
           "python_version": ".".join(host_python.split(".")[:2]), "extra": ""}
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


def build(src: Path, out: Path, python: str, host_python: str) -> dict[str, object]:
    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    version = meta["version"]
    deps_key = digest([src / "pyproject.toml"], src) + "-py" + host_python + "-pip" + installed_version("pip")
    app_key = digest(source_files(src), src) + "-py" + host_python.replace(".", "") + "-pip" + installed_version("pip")
    release = f"{version}-{app_key}"
    tarball = out / f"scalemart-{release}.tar"
    pip_wheel = f"pip-{installed_version('pip')}-py3-none-any.whl"
    result = {"release": release, "version": version, "tarball": str(tarball), "pip_wheel": pip_wheel}
    if tarball.exists():
        return {"changed": False, **result}

    out.mkdir(parents=True, exist_ok=True)
    deps = out / f"deps-{deps_key}"
    if not (deps / ".complete").exists():
        shutil.rmtree(deps, ignore_errors=True)
        # Same interpreter version and platform as the hosts (Debian 12, CPython 3.11), so the
        # wheels pip picks here are the ones the hosts can install.
        pip(python, "wheel", "--quiet", "--wheel-dir", str(deps), str(src))
        for own in deps.glob("scalemart-*.whl"):
            own.unlink()
        for _ in range(5):
            missing = missing_for_host(deps, host_python)
            if not missing:
                break
            pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", host_python,
                "--dest", str(deps), *missing)
        else:
            sys.exit(f"the wheelhouse for Python {host_python} is still missing {missing}")
        # The hosts' venvs are created without pip (ensurepip is slow and needs python3-venv);
        # pip runs from its wheel instead and installs itself with the rest.
        pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(deps),
            f"pip=={installed_version('pip')}")
        (deps / ".complete").write_text(deps_key + "\n")

    with tempfile.TemporaryDirectory(prefix="scalemart-wheel-") as tmp:
        # A copy, so the build leaves no build/ or egg-info behind in the source tree.
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.egg-info", "*.pyc"))
        wheels = Path(tmp) / "wheels"
        pip(python, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(copy))
        partial = tarball.with_suffix(".tar.partial")
        with tarfile.open(partial, "w") as tar:
            for whl in sorted([*deps.glob("*.whl"), *wheels.glob("*.whl")]):
                tar.add(whl, arcname=whl.name)
        os.replace(partial, tarball)
    # The cache would otherwise grow by a bundle per app change; hosts keep their own copies.
    for old in sorted(out.glob("scalemart-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_BUNDLES:]:
        old.unlink()
    return {"changed": True, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="the app/ folder")
    parser.add_argument("--out", required=True, type=Path, help="the wheelhouse cache, e.g. build/wheelhouse")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose pip builds the wheels")
    parser.add_argument("--host-python", default=".".join(map(str, sys.version_info[:3])),
                        help="the hosts' Python version (X.Y.Z); markers are evaluated for it")
    args = parser.parse_args()
    if not (args.source / "pyproject.toml").is_file():
        sys.exit(f"--source {args.source} has no pyproject.toml: point app_source_dir at the repository's app/ folder")
    if args.host_python.split(".")[:2] != [str(v) for v in sys.version_info[:2]]:
        sys.exit(f"the hosts run Python {args.host_python} but the control machine's is "
                 f"{sys.version_info.major}.{sys.version_info.minor}: compiled wheels would not fit; build with a "
                 "matching interpreter (app_build_python)")
    print(json.dumps(build(args.source.resolve(), args.out.resolve(), args.python, args.host_python)))


if __name__ == "__main__":
    main()
