"""Components: an Environment is a private network, its data volumes and its hosts.

Components never read config: the entry point validates it once and passes it down in Args.
Child resource names derive from the component name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from stack import inventory
from stack.config import VOLUMES, HostSpec, Published, StackConfig
from stack.docker_resources import Container, Network, Volume

# What a systemd host container needs here (DESIGN.md: `--privileged` does not work on this engine).
SYSTEMD_CAPABILITIES = {"adds": ["SYS_ADMIN"]}
SYSTEMD_SECURITY_OPTS = ["seccomp=unconfined", "apparmor=unconfined"]
SYSTEMD_TMPFS = {"/run": "", "/run/lock": "", "/tmp": ""}  # noqa: S108 - tmpfs mount points in the host
CGROUP_MOUNT = {"host_path": "/sys/fs/cgroup", "container_path": "/sys/fs/cgroup", "read_only": True}


def memory_mb(size: str) -> int:
    number, unit = int(size[:-1]), size[-1]
    return {"k": max(1, number // 1024), "m": number, "g": number * 1024}[unit]


def label_items(labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in sorted(labels.items())]


@dataclass(frozen=True)
class HostArgs:
    spec: HostSpec
    image: str
    network_name: pulumi.Input[str]
    labels: Mapping[str, str]
    volumes: Sequence[tuple[pulumi.Input[str], str]] = ()
    published: Sequence[Published] = ()


class Host(pulumi.ComponentResource):
    """One systemd host container with a static address on the environment's network."""

    container: Container
    address: pulumi.Output[str]

    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("scalemart:stack:Host", name, None, opts)
        spec = args.spec
        labels = {**args.labels, "scalemart.role": spec.role, "scalemart.host": spec.name}
        self.container = Container(
            f"{name}-container",
            name=spec.container,
            hostname=spec.name,
            image=args.image,
            labels=label_items(labels),
            networks_advanced=[{"name": args.network_name, "ipv4_address": spec.address, "aliases": [spec.name]}],
            ports=[
                {"internal": p.container_port, "external": p.host_port, "ip": p.host_ip, "protocol": "tcp"}
                for p in args.published
            ],
            volumes=[
                CGROUP_MOUNT,
                *({"volume_name": vol, "container_path": path, "read_only": False} for vol, path in args.volumes),
            ],
            memory=memory_mb(spec.memory),
            capabilities=SYSTEMD_CAPABILITIES,
            security_opts=SYSTEMD_SECURITY_OPTS,
            tmpfs=SYSTEMD_TMPFS,
            cgroupns_mode="host",
            restart="unless-stopped",
            wait_for_systemd=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        network_name = args.network_name
        self.address = pulumi.Output.all(self.container.network_data, network_name).apply(
            lambda a: next((n["ip_address"] for n in a[0] or [] if n["network_name"] == a[1]), spec.address)
        )
        self.info = pulumi.Output.all(self.container.name, self.address).apply(
            lambda a: {
                "name": spec.name,
                "container": a[0],
                "address": a[1],
                "role": spec.role,
                "groups": list(spec.groups),
                "memory": spec.memory,
                "connection": {"ansible_connection": "community.docker.docker", "ansible_host": a[0]},
            }
        )
        self.register_outputs({"address": self.address, "container": self.container.name})


@dataclass(frozen=True)
class EnvironmentArgs:
    config: StackConfig


class Environment(pulumi.ComponentResource):
    """The private network, data volumes and hosts of one environment."""

    def __init__(self, name: str, args: EnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("scalemart:stack:Environment", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(
            f"{name}-net",
            name=cfg.network_name,
            driver="bridge",
            labels=label_items(cfg.labels),
            ipam_configs=[{"subnet": cfg.subnet, "gateway": cfg.gateway}],
            opts=child,
        )
        # Data volumes outlive their hosts and a `down`: Pulumi forgets them on delete; only
        # `make stack-down PURGE=1` removes them (stack/cli.py, by label).
        self.volumes = {
            suffix: Volume(
                f"{name}-{suffix}",
                name=cfg.volume_name(suffix),
                labels=label_items(cfg.labels),
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            for suffix in VOLUMES
        }
        self.hosts: dict[str, Host] = {}
        for spec in cfg.hosts:
            mounts = [
                (self.volumes[suffix].name, path) for suffix, (role, path) in VOLUMES.items() if role == spec.role
            ]
            published = [p for p in cfg.published if p.role == spec.role and spec.index == 1]
            self.hosts[spec.name] = Host(
                f"{name}-{spec.name}",
                HostArgs(
                    spec=spec,
                    image=cfg.image,
                    network_name=self.network.name,
                    labels=cfg.labels,
                    volumes=mounts,
                    published=published,
                ),
                opts=child,
            )
        self.resources: list[pulumi.CustomResource] = [
            self.network,
            *self.volumes.values(),
            *(h.container for h in self.hosts.values()),
        ]

        self.host_info: pulumi.Output[dict[str, Any]] = pulumi.Output.all(*(h.info for h in self.hosts.values())).apply(
            lambda infos: {i["name"]: i for i in infos}
        )
        # The load balancer is what users call "the shop" (loadtests/ and `make up` read urls.shop).
        self.urls = {("shop" if p.service == "lb" else p.service): p.url for p in cfg.published}
        self.inventory = self.host_info.apply(lambda hosts: inventory.build(cfg, hosts))
        self.register_outputs({"hosts": self.host_info, "urls": self.urls, "network": self.network.name})
