"""Settings fail fast with the variable's name; the app builds as a wheel with pinned deps and an entry point."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from tests.app.conftest import APP_SRC, PYTHON, ROOT


def run(env: Any, *args: str, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in env.environ().items() if k not in drop}
    return subprocess.run(
        [str(PYTHON), "-m", "scalemart", *args], env=environ, capture_output=True, text=True, timeout=60
    )


def test_serve_without_admin_token_refuses_to_start_naming_the_variable(make_env: Any) -> None:
    p = run(make_env(), "serve", "--port", "1", drop=("SCALEMART_ADMIN_TOKEN",))
    assert p.returncode == 2
    assert "SCALEMART_ADMIN_TOKEN: is required and has no default" in p.stderr


def test_placeholder_admin_token_is_refused_outside_dev(make_env: Any) -> None:
    p = run(make_env(environment="production", admin_token="changeme-changeme-changeme"), "serve", "--port", "1")
    assert p.returncode == 2 and "SCALEMART_ADMIN_TOKEN looks like a placeholder" in p.stderr
    short = run(make_env(environment="staging", admin_token="x" * 16), "reconcile")
    assert short.returncode == 2 and "at least 24" in short.stderr


def test_bad_urls_and_numbers_name_the_variable(make_env: Any) -> None:
    p = run(make_env(redis_url="localhost:6379", workers="0"), "serve")
    assert p.returncode == 2
    assert "SCALEMART_REDIS_URL: Value error, must start with redis://" in p.stderr
    assert "SCALEMART_WORKERS:" in p.stderr


def test_settings_can_come_from_an_env_file(make_env: Any, tmp_path: Path) -> None:
    env = make_env()
    env_file = tmp_path / "scalemart.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.vars.items()))
    p = subprocess.run(
        [str(PYTHON), "-m", "scalemart", "--env-file", str(env_file), "reconcile"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(APP_SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "0 product(s): clean" in p.stdout


def test_wheel_has_console_entry_point_and_exactly_pinned_deps_matching_the_toolchain(tmp_path: Path) -> None:
    # Build from a copy: setuptools leaves build/ and *.egg-info/ beside the sources it builds.
    src = tmp_path / "src"
    shutil.copytree(APP_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "bench"))
    p = subprocess.run(
        [str(PYTHON), "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    wheel = next(tmp_path.glob("scalemart-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "scalemart = scalemart.cli:main" in entry_points
    assert "scalemart/api.py" in names and "scalemart/py.typed" in names
    assert {f"scalemart/routes/{m}.py" for m in ("health", "catalogue", "purchase", "orders", "admin")} <= set(names)
    # the analytics console works from the wheel alone: its templates and static files ship in it
    shipped = {
        "scalemart/analytics/templates/dashboard.html",
        "scalemart/analytics/templates/login.html",
        "scalemart/analytics/static/analytics.js",
        "scalemart/analytics/static/analytics.css",
    }
    assert shipped <= set(names), sorted(shipped - set(names))
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert requires and all("==" in r for r in requires), requires
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {r.split("==")[0].lower(): r.split("==")[1] for r in root}
    for r in requires:
        name, version = r.split(";")[0].split("==")
        base = re.sub(r"\[.*\]", "", name).strip().lower()
        if base in pinned:
            assert version.strip() == pinned[base], f"{base}: app pins {version}, toolchain pins {pinned[base]}"
