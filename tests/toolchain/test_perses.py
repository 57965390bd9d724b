"""Perses as `make bootstrap` builds it: the pinned version stamped, the web UI embedded, the CUE schemas
beside it (folders and the reproducible archive the role ships), and the config check refusing what the
server refuses."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml

from tests.toolchain.conftest import ROOT, free_port, tool, wait_port
from toolchain.gotools import PERSES_HOME, PERSES_VERSION

SCHEMAS = PERSES_HOME / "cue" / "schemas"


def _config(tmp_path: Path, **security: object) -> Path:
    config = {
        "database": {"file": {"folder": str(tmp_path / "db"), "extension": "json"}},
        "schemas": {f"{kind}_path": str(SCHEMAS / kind) for kind in ("panels", "queries", "datasources", "variables")},
        "security": {
            "enable_auth": True,
            "encryption_key": "k" * 32,
            "authentication": {"disable_sign_up": True, "providers": {"enable_native": True}},
            **security,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("perses-check-config"), str(path)], capture_output=True, text=True, timeout=60)


def test_percli_prints_the_pinned_version() -> None:
    out = subprocess.run([tool("percli"), "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and PERSES_VERSION.lstrip("v") in out.stdout, out.stdout + out.stderr


def test_the_server_reports_its_version_and_serves_the_built_ui(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "perses.log").open("w")
    proc = subprocess.Popen(
        [tool("perses"), f"--config={_config(tmp_path)}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, tmp_path / "perses.log")
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10).json()
        assert health["version"] == PERSES_VERSION.lstrip("v") and health["database"] is True, health
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        # The placeholder compress_assets.sh writes without a UI build says "forget to generate the react app".
        assert page.status_code == 200 and "<title>Perses</title>" in page.text, page.text[:300]
        assert "forget to generate" not in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_schemas_archive_holds_cue_mod_beside_the_schemas() -> None:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress((PERSES_HOME / "cue.tar.gz").read_bytes()))) as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())
    assert "cue.mod/module.cue" in names
    for kind in ("panels/stat", "panels/table", "queries/prometheus", "datasources/prometheus", "variables"):
        assert any(n.startswith(f"cue/schemas/{kind}") for n in names), kind


def test_the_config_check_accepts_the_roles_shape(tmp_path: Path) -> None:
    out = _check(_config(tmp_path))
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"encryption_key": "short"}, "encryption_key size must be 32 bytes"),
        ({"authentication": {"providers": {"enable_native": False}}}, "impossible to enable auth if no provider"),
        (
            {"authentication": {"providers": {"enable_native": True, "oidc": [{"slug_id": "corp", "client_id": "x"}]}}},
            "provider's `issuer` is mandatory",
        ),
        ({"authorization": {"guest_permissions": [{"actions": ["read"], "scopes": ["*"]}]}}, "guest_permissions"),
        ({"enable_authh": True}, "enable_authh"),
    ],
)
def test_the_config_check_refuses_what_the_server_refuses(tmp_path: Path, security: dict, expected: str) -> None:
    out = _check(_config(tmp_path, **security))
    assert out.returncode == 1, out.stdout
    assert "refused" in out.stderr and expected in out.stderr, out.stderr


def test_the_config_check_names_a_missing_schemas_folder(tmp_path: Path) -> None:
    path = _config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["schemas"]["panels_path"] = str(ROOT / "no-such-folder")
    path.write_text(yaml.safe_dump(config))
    out = _check(path)
    assert out.returncode == 1 and "schemas.panels_path" in out.stderr, out.stderr
