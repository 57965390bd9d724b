"""Entry point of the Pulumi program (`main: stack/` in Pulumi.yaml).

Reads the `scalemart:*` config once, validates all of it before any resource is registered,
then builds the Environment and exports hosts, URLs and the Ansible inventory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The language host runs this file by path; the providers must import as `stack.*` (they are
# serialised by module name), so the project root goes first on sys.path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
import pulumi.runtime.config  # noqa: E402
import yaml  # noqa: E402

from stack import config as stack_config  # noqa: E402
from stack.components import Environment, EnvironmentArgs  # noqa: E402
from stack.docker_resources import DockerError  # noqa: E402


def read_raw_config() -> dict[str, Any]:
    """Every `scalemart:*` key of this stack, structured values decoded."""
    cfg = pulumi.Config(stack_config.NAMESPACE)
    keys = {**pulumi.runtime.config.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    prefix = f"{stack_config.NAMESPACE}:"
    raw: dict[str, Any] = {}
    for full in keys:
        if not full.startswith(prefix):
            continue
        key = full[len(prefix) :]
        value = cfg.get(key)
        # Structured values (objects, lists) arrive JSON-encoded; scalars arrive as plain strings.
        raw[key] = json.loads(value) if value and value[:1] in "{[" else value
    return raw


def default_image() -> str:
    from toolchain import image

    return image.tag()


def sibling_subnets(stack: str, *project_dirs: Path) -> list[tuple[str, str]]:
    """Subnets declared by the other stacks' config files (the committed ones and the run copy)."""
    found = []
    seen = {stack}
    for path in sorted(p for d in project_dirs for p in d.glob("Pulumi.*.yaml")):
        other = path.name[len("Pulumi.") : -len(".yaml")]
        if other in seen:
            continue
        seen.add(other)
        data = yaml.safe_load(path.read_text()) or {}
        subnet = (data.get("config") or {}).get(f"{stack_config.NAMESPACE}:subnet")
        if subnet:
            found.append((f"stack {other} ({path.name})", str(subnet)))
    return found


def docker_subnets(own_network: str) -> list[tuple[str, str]]:
    """Subnets of the engine's networks other than this environment's own."""
    from stack.docker_resources import _client

    found = []
    for net in _client().networks.list():
        if net.name == own_network:
            continue
        for conf in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if conf.get("Subnet"):
                found.append((f"Docker network {net.name}", conf["Subnet"]))
    return found


def main(
    raw: dict[str, Any] | None = None, image: str | None = None, other_subnets: Iterable[tuple[str, str]] | None = None
) -> Environment:
    stack = pulumi.get_stack()
    raw = read_raw_config() if raw is None else raw
    if other_subnets is None:
        # Validate everything that needs no engine first, so a bad file fails without Docker too.
        siblings = sibling_subnets(stack, ROOT, Path.cwd())
        prelim = stack_config.validate(stack, raw, image or default_image(), siblings)
        other_subnets = [*siblings, *docker_subnets(prelim.network_name)]
    cfg = stack_config.validate(stack, raw, image or default_image(), other_subnets)

    env = Environment(cfg.name_prefix, EnvironmentArgs(config=cfg))
    pulumi.export("environment", cfg.environment)
    pulumi.export("network", {"name": env.network.name, "subnet": cfg.subnet, "gateway": cfg.gateway})
    pulumi.export("volumes", {suffix: vol.name for suffix, vol in env.volumes.items()})
    pulumi.export("hosts", env.host_info)
    pulumi.export("urls", env.urls)
    pulumi.export("inventory", env.inventory)
    return env


if __name__ == "__main__":
    try:
        main()
    except (stack_config.ConfigError, DockerError) as exc:
        # A clean one-line error (key or engine + fix) instead of a traceback; nothing has been registered yet.
        raise pulumi.RunError(str(exc)) from None
