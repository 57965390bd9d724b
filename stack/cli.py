"""`python -m stack.cli up|down|refresh|preview|outputs|inventory ENV` through the Automation API.

State lives in `.state/` (ignored): the local file backend (`.state/pulumi`), the passphrase of
the secrets provider (`.state/passphrase`, generated on first use, mode 0600) and the Pulumi
project the CLI actually runs (`.state/project`): a copy of Pulumi.yaml plus each stack's config
taken from the committed `Pulumi.<env>.yaml`. Pulumi writes its per-stack encryption salt into
that copy, so the committed files never change and a fresh clone never meets a foreign salt.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolchain.common import BUILD, TOOLS_BIN, tool_path

ROOT = Path(__file__).resolve().parents[1]


class CliError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass(frozen=True)
class Paths:
    """Where one set of stacks keeps its state; tests point this at a temporary folder."""

    state: Path = ROOT / ".state"
    build: Path = BUILD

    @property
    def backend(self) -> Path:
        return self.state / "pulumi"

    @property
    def home(self) -> Path:
        return self.state / "pulumi-home"

    @property
    def passphrase(self) -> Path:
        return self.state / "passphrase"

    @property
    def project(self) -> Path:
        return self.state / "project"

    def inventory(self, stack: str) -> Path:
        return self.build / stack / "inventory.yml"

    def outputs(self, stack: str) -> Path:
        return self.build / stack / "outputs.json"


def passphrase(paths: Paths) -> str:
    """The secrets passphrase, generated once per machine state; never a default."""
    path = paths.passphrase
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    if path.stat().st_mode & 0o077:
        raise CliError(f"{path} is readable by others: run `chmod 600 {path}`")
    return path.read_text().strip()


def committed_config(stack: str) -> dict[str, Any]:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
        raise CliError(
            f"no stack config {path.name}: ENV must be one of {', '.join(known)} "
            f"(or add {path.name} with a scalemart:environment)"
        )
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("config") or {})


OVERRIDES_VAR = "SCALEMART_STACK_OVERRIDES"


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, mappings merged key by key (so `hosts: {app: {count: 2}}` keeps the memory)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def stack_config(stack: str, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The committed config, with the file named by $SCALEMART_STACK_OVERRIDES merged over it.

    The overrides file has the layout of Pulumi.<env>.yaml (`config:` and the same keys); it lets a
    user or a test scale or re-publish an environment without editing the committed file.
    """
    config = committed_config(stack)
    name = environ.get(OVERRIDES_VAR)
    if not name:
        return config
    path = Path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{OVERRIDES_VAR}={name}: cannot read it ({exc}); point it at a YAML file or unset it") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise CliError(
            f"{OVERRIDES_VAR}={name}: expected `config:` with keys like those of Pulumi.{stack}.yaml, "
            "e.g. config: {scalemart:hosts: {app: {count: 2}}}"
        )
    return merge(config, data["config"])


def prepare_project(stack: str, config: Mapping[str, Any], paths: Paths) -> Path:
    """Write the project the CLI runs: Pulumi.yaml pointing at stack/, and this stack's config."""
    project = paths.project
    project.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
    settings["main"] = "stack/"
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    link = project / "stack"
    if not link.is_symlink():
        link.symlink_to(ROOT / "stack", target_is_directory=True)
    stack_file = project / f"Pulumi.{stack}.yaml"
    existing = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else None
    data: dict[str, Any] = {}
    if existing and existing.get("encryptionsalt"):
        data["encryptionsalt"] = existing["encryptionsalt"]
    data["config"] = dict(config)
    stack_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def pulumi_env(paths: Paths) -> dict[str, str]:
    paths.backend.mkdir(parents=True, exist_ok=True)
    paths.home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": tool_path(os.environ.get("PATH", "/usr/bin:/bin")),
        "PULUMI_HOME": str(paths.home),
        "PULUMI_BACKEND_URL": f"file://{paths.backend}",
        "PULUMI_CONFIG_PASSPHRASE": passphrase(paths),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    }


def open_stack(stack: str, config: Mapping[str, Any] | None = None, paths: Paths | None = None) -> Any:
    """Create or select `stack` with its config (default: Pulumi.<stack>.yaml and any overrides)."""
    from pulumi import automation as auto

    paths = paths or Paths()
    pulumi_bin = TOOLS_BIN / "pulumi"
    if not pulumi_bin.exists():
        raise CliError(f"{pulumi_bin} is missing: run `make bootstrap`")
    config = stack_config(stack) if config is None else config
    project = prepare_project(stack, config, paths)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(project),
        pulumi_home=str(paths.home),
        env_vars=pulumi_env(paths),
        secrets_provider="passphrase",
        pulumi_command=auto.PulumiCommand(root=str(ROOT / ".tools"), skip_version_check=True),
    )
    return auto.create_or_select_stack(stack_name=stack, work_dir=str(project), opts=opts)


def outputs(stack_obj: Any) -> dict[str, Any]:
    return {k: v.value for k, v in stack_obj.outputs().items()}


def write_inventory(stack: str, stack_obj: Any, paths: Paths) -> Path:
    """Write build/<stack>/inventory.yml and build/<stack>/outputs.json from the stack outputs."""
    from stack import inventory

    outs = outputs(stack_obj)
    data = outs.get("inventory")
    if not data:
        raise CliError(f"stack {stack} has no inventory output: run `make stack-up ENV={stack}` first")
    out_path = paths.outputs(stack)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(outs, indent=2, sort_keys=True) + "\n")
    return inventory.write(paths.inventory(stack), stack, data)


def purge_volumes(stack: str) -> list[str]:
    """Remove the data volumes `down` keeps (they carry the stack label)."""
    from stack.docker_resources import _client

    removed = []
    for vol in _client().volumes.list(filters={"label": f"scalemart.stack={stack}"}):
        vol.remove()
        removed.append(vol.name)
    return removed


def _printer(quiet: bool) -> Callable[[str], None] | None:
    return None if quiet else (lambda line: print(line, flush=True))


def up(
    stack: str,
    paths: Paths | None = None,
    config: Mapping[str, Any] | None = None,
    quiet: bool = False,
    on_event: Callable[[Any], None] | None = None,
) -> Any:
    paths = paths or Paths()
    stack_obj = open_stack(stack, config, paths)
    result = stack_obj.up(on_output=_printer(quiet), on_event=on_event, color="never")
    write_inventory(stack, stack_obj, paths)
    return result


def down(
    stack: str,
    purge: bool = False,
    paths: Paths | None = None,
    config: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> Any:
    paths = paths or Paths()
    stack_obj = open_stack(stack, config, paths)
    result = stack_obj.destroy(on_output=_printer(quiet), color="never")
    paths.inventory(stack).unlink(missing_ok=True)
    paths.outputs(stack).unlink(missing_ok=True)
    if purge:
        removed = purge_volumes(stack)
        if not quiet:
            print(f"purged volumes: {', '.join(removed) or 'none'}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.cli", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "refresh", "preview", "outputs", "inventory"])
    parser.add_argument("env", help="stack name: dev, staging or production (Pulumi.<env>.yaml)")
    parser.add_argument("--purge", action="store_true", help="down: also remove the data volumes")
    args = parser.parse_args(argv)
    from pulumi import automation as auto

    paths = Paths()
    started = time.monotonic()
    try:
        if args.command == "up":
            up(args.env, paths)
            print(f"\ninventory: {paths.inventory(args.env)}")
            urls = json.loads(paths.outputs(args.env).read_text()).get("urls") or {}
            for service, url in sorted(urls.items()):
                print(f"{service:13} {url}")
        elif args.command == "down":
            down(args.env, purge=args.purge, paths=paths)
        elif args.command == "refresh":
            open_stack(args.env, paths=paths).refresh(on_output=_printer(False), color="never")
        elif args.command == "preview":
            open_stack(args.env, paths=paths).preview(on_output=_printer(False), color="never", diff=True)
        elif args.command == "outputs":
            print(json.dumps(outputs(open_stack(args.env, paths=paths)), indent=2, sort_keys=True))
        elif args.command == "inventory":
            print(write_inventory(args.env, open_stack(args.env, paths=paths), paths))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except auto.CommandError:
        # The engine output above already shows which resource (URN) failed and why.
        print(f"error: pulumi {args.command} {args.env} failed; see the diagnostics above", file=sys.stderr)
        return 1
    print(f"{args.command} {args.env}: {time.monotonic() - started:.1f} s wall time", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
