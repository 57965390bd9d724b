"""The Pulumi CLI built from the Go module proxy, with our Python language host."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from tests.toolchain.conftest import ROOT, pulumi_env, tool

PINNED = "v3.136.1"


def test_pulumi_version_is_the_pinned_one() -> None:
    out = subprocess.run([tool("pulumi"), "version"], capture_output=True, text=True, check=True).stdout.strip()
    assert out == PINNED


def test_python_sdk_matches_the_cli() -> None:
    from importlib.metadata import version

    assert "v" + version("pulumi") == PINNED


def _program(tmp_path: Path) -> Path:
    prog = tmp_path / "prog"
    prog.mkdir()
    (prog / "Pulumi.yaml").write_text(
        textwrap.dedent(f"""\
        name: smoke
        runtime:
          name: python
          options:
            virtualenv: {ROOT / ".venv"}
        """)
    )
    # A dynamic resource and a secret: exercises the language host, the exec script, the
    # dynamic-provider plugin script and the passphrase secrets provider, with no plugin download.
    (prog / "__main__.py").write_text(
        textwrap.dedent("""\
        import pulumi
        from pulumi.dynamic import CreateResult, Resource, ResourceProvider

        class Echo(ResourceProvider):
            def create(self, props):
                return CreateResult(id_="echo-1", outs={"value": props["value"]})

        class EchoResource(Resource):
            def __init__(self, name, value):
                super().__init__(Echo(), name, {"value": value})

        cfg = pulumi.Config()
        r = EchoResource("thing", cfg.require("value"))
        pulumi.export("value", r.value)
        pulumi.export("secret", cfg.require_secret("password"))
        """)
    )
    return prog


def test_program_up_and_destroy_on_a_local_file_backend(tmp_path: Path) -> None:
    prog = _program(tmp_path)
    env = pulumi_env(tmp_path / "home")
    state = tmp_path / "state"
    state.mkdir()

    def pulumi(*args: str) -> str:
        # In a network namespace of its own with only loopback up: any download attempt fails the run.
        offline = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
        proc = subprocess.run(
            [*offline, tool("pulumi"), *args, "--non-interactive"],
            cwd=prog,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    pulumi("login", f"file://{state}")
    pulumi("stack", "init", "smoke", "--secrets-provider", "passphrase")
    pulumi("config", "set", "value", "hello")
    pulumi("config", "set", "--secret", "password", "s3cret")
    up = pulumi("up", "--yes", "--skip-preview")
    assert "+ 2 created" in up
    outputs = json.loads(pulumi("stack", "output", "--json", "--show-secrets"))
    assert outputs == {"value": "hello", "secret": "s3cret"}
    # The secret is encrypted in the state file, never in clear.
    assert "s3cret" not in "".join(p.read_text() for p in state.rglob("*.json"))
    assert "no changes" in pulumi("preview", "--diff").lower() or "2 unchanged" in pulumi("preview")
    pulumi("destroy", "--yes")
    assert json.loads(pulumi("stack", "export"))["deployment"].get("resources") in (None, [])
    # Nothing reached for a plugin download.
    assert not (tmp_path / "home" / "plugins").exists() or not any((tmp_path / "home" / "plugins").iterdir())
