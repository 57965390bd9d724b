"""Docker Network, Volume and Container as Pulumi dynamic providers over the `docker` Python SDK.

pulumi-docker's provider plugin cannot be installed here, so these stand in for it. The inputs
keep pulumi_docker's names (`networks_advanced`, `ports[].internal/external/ip`, `volumes[].volume_name`,
`labels[].label/value`, `capabilities.adds`, `memory` in MB, ...) so that switching to
`pulumi_docker` later touches this module only. Extensions have their own names (`wait_for_systemd`).

The engine is whatever `docker.from_env()` finds: the local socket, or `DOCKER_HOST` (with
`DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`) for a remote engine.

Pulumi stores each provider object (pickled) in the state and unpickles it in a separate
dynamic-provider process whose sys.path does not hold the project root. So a provider pickles as
"run this file and take class X from it" (`_ByPath`), which loads wherever the file exists,
instead of a `stack.docker_resources` import that would need PYTHONPATH.
"""

from __future__ import annotations

import operator
import runpy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pulumi
from docker.types import Mount
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

# pulumi.runtime's marker for a value not known during preview.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PROVIDER_KEY = "__provider"
SYSTEMD_TIMEOUT = 120.0


class DockerError(RuntimeError):
    """A Docker engine call failed; the message names the resource and what to do."""


def _client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerError(
            f"no Docker engine answers ({exc}): start dockerd (`make bootstrap`) "
            "or point DOCKER_HOST at a reachable engine"
        ) from exc
    return client


def _labels(items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {str(i["label"]): str(i["value"]) for i in items or []}


def _label_items(labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in sorted(labels.items())]


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_unknown(v) for v in value)
    return value == UNKNOWN


def _diff(
    olds: Mapping[str, Any], news: Mapping[str, Any], updatable: frozenset[str], computed: frozenset[str]
) -> DiffResult:
    """Replace when a creation-only input changed (or is unknown), update in place otherwise.

    `olds` are the stored outputs (inputs plus `computed` values); computed keys are not compared.
    """
    keys = (set(_inputs(news)) | set(_inputs(olds))) - computed
    changed = sorted(k for k in keys if _has_unknown(news.get(k)) or olds.get(k) != news.get(k))
    replaces = [k for k in changed if k not in updatable]
    return DiffResult(
        changes=bool(changed),
        replaces=replaces,
        # Names are fixed, so the old object must go before its replacement is created.
        delete_before_replace=bool(replaces),
        stables=[],
    )


class _ByPath:
    """Pickles as `runpy.run_path(THIS_FILE)[name]`: needs the file, not an importable package."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return operator.getitem, (_RunPath(), self.name)


class _RunPath:
    def __reduce__(self) -> tuple[Any, ...]:
        return runpy.run_path, (str(Path(__file__).resolve()),)


class _PortableProvider(ResourceProvider):
    def __reduce__(self) -> tuple[Any, ...]:
        # operator.call(cls) -> a fresh provider; the providers keep no state of their own.
        return operator.call, (_ByPath(type(self).__name__),)


def _gone() -> ReadResult:
    # An empty id tells the engine the object no longer exists (refresh drops it from the state).
    return ReadResult(id_="", outs={})


# --------------------------------------------------------------------------------------------- network
class NetworkProvider(_PortableProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client()
        pools = [
            docker.types.IPAMPool(subnet=c["subnet"], gateway=c.get("gateway")) for c in props.get("ipam_configs") or []
        ]
        try:
            net = client.networks.create(
                props["name"],
                driver=props.get("driver") or "bridge",
                internal=bool(props.get("internal")),
                attachable=bool(props.get("attachable")),
                labels=_labels(props.get("labels")),
                options=props.get("options") or None,
                check_duplicate=True,
                ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
            )
        except docker.errors.APIError as exc:
            raise DockerError(
                f"network {props['name']}: create failed: {exc.explanation or exc}. If the "
                "subnet overlaps another network, change scalemart:subnet"
            ) from exc
        return CreateResult(id_=net.id, outs={**_inputs(props), "network_id": net.id})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Docker cannot change a network in place: every input is creation-only.
        return _diff(olds, news, frozenset(), frozenset({"network_id"}))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            attrs = _client().networks.get(id_).attrs
        except docker.errors.NotFound:
            return _gone()
        configs = [
            {"subnet": c.get("Subnet"), "gateway": c.get("Gateway")}
            for c in (attrs.get("IPAM") or {}).get("Config") or []
        ]
        outs = {
            **_inputs(props),
            "name": attrs["Name"],
            "driver": attrs["Driver"],
            "internal": attrs.get("Internal", False),
            "attachable": attrs.get("Attachable", False),
            "labels": _label_items(attrs.get("Labels") or {}),
            "network_id": attrs["Id"],
        }
        if props.get("ipam_configs") is not None:
            outs["ipam_configs"] = [
                {k: v for k, v in c.items() if k in want}
                for c, want in zip(configs, props["ipam_configs"], strict=False)
            ]
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            _client().networks.get(id_).remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(
                f"network {props.get('name')}: remove failed: {exc.explanation or exc}. "
                "Remove the containers still attached (`docker network inspect`) and retry"
            ) from exc


class Network(Resource, module="docker", name="Network"):
    name: pulumi.Output[str]
    network_id: pulumi.Output[str]
    labels: pulumi.Output[list[dict[str, str]]]
    ipam_configs: pulumi.Output[list[dict[str, str]]]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        ipam_configs: Sequence[Mapping[str, str]] | None = None,
        labels: Sequence[Mapping[str, str]] = (),
        driver: str = "bridge",
        internal: bool = False,
        attachable: bool = False,
        options: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NetworkProvider(),
            resource_name,
            {
                "name": name,
                "driver": driver,
                "internal": internal,
                "attachable": attachable,
                "ipam_configs": [dict(c) for c in ipam_configs or []],
                "labels": [dict(x) for x in labels],
                "options": dict(options or {}),
                "network_id": None,
            },
            opts,
        )


# ---------------------------------------------------------------------------------------------- volume
class VolumeProvider(_PortableProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client()
        try:
            # An existing volume of that name is adopted, not wiped: data outlives `down` without PURGE.
            vol = client.volumes.create(
                name=props["name"],
                driver=props.get("driver") or "local",
                driver_opts=props.get("driver_opts") or None,
                labels=_labels(props.get("labels")),
            )
        except docker.errors.APIError as exc:
            raise DockerError(f"volume {props['name']}: create failed: {exc.explanation or exc}") from exc
        return CreateResult(id_=vol.name, outs={**_inputs(props), "mountpoint": vol.attrs.get("Mountpoint")})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _diff(olds, news, frozenset(), frozenset({"mountpoint"}))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            attrs = _client().volumes.get(id_).attrs
        except docker.errors.NotFound:
            return _gone()
        return ReadResult(
            id_=id_,
            outs={
                **_inputs(props),
                "name": attrs["Name"],
                "driver": attrs["Driver"],
                "labels": _label_items(attrs.get("Labels") or {}),
                "mountpoint": attrs.get("Mountpoint"),
            },
        )

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            _client().volumes.get(id_).remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(
                f"volume {id_}: remove failed: {exc.explanation or exc}. Remove the container using it and retry"
            ) from exc


class Volume(Resource, module="docker", name="Volume"):
    name: pulumi.Output[str]
    labels: pulumi.Output[list[dict[str, str]]]
    mountpoint: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        labels: Sequence[Mapping[str, str]] = (),
        driver: str = "local",
        driver_opts: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            VolumeProvider(),
            resource_name,
            {
                "name": name,
                "driver": driver,
                "driver_opts": dict(driver_opts or {}),
                "labels": [dict(x) for x in labels],
                "mountpoint": None,
            },
            opts,
        )


# ------------------------------------------------------------------------------------------- container
def _systemd_state(container: Any) -> str:
    result = container.exec_run(["systemctl", "is-system-running"])
    return result.output.decode(errors="replace").strip()


def wait_for_systemd(container: Any, timeout: float = SYSTEMD_TIMEOUT) -> str:
    """Wait until systemd has finished booting; return its state (running or degraded)."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            logs = container.logs(tail=20).decode(errors="replace")
            raise DockerError(
                f"container {container.name} stopped while booting ({container.status}); "
                f"last log lines:\n{logs}\nCheck the image runs systemd with the host flags"
            )
        state = _systemd_state(container)
        if state in ("running", "degraded"):
            return state
        time.sleep(0.25)
    raise DockerError(
        f"container {container.name}: systemd still {state!r} after {timeout:.0f} s; "
        "inspect with `docker exec <name> systemctl list-jobs`"
    )


class ContainerProvider(_PortableProvider):
    # Docker can change these on a live container; everything else means a new container.
    UPDATABLE = frozenset({"memory", "restart", "must_run", "wait_for_systemd"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client()
        api = client.api
        name = props["name"]
        try:
            client.images.get(props["image"])
        except docker.errors.ImageNotFound:
            raise DockerError(
                f"container {name}: image {props['image']} is not on the engine; build it with "
                "`make bootstrap` (there is no registry to pull from)"
            ) from None
        networks = props.get("networks_advanced") or []
        mounts = [
            Mount(
                target=v["container_path"],
                source=v.get("volume_name") or v.get("host_path"),
                type="volume" if v.get("volume_name") else "bind",
                read_only=bool(v.get("read_only")),
            )
            for v in props.get("volumes") or []
        ]
        ports = props.get("ports") or []
        # Numbers come back from the engine as floats (protobuf Struct): Docker wants integers.
        port_bindings = {
            f"{int(p['internal'])}/{p.get('protocol') or 'tcp'}": (p.get("ip") or "127.0.0.1", int(p["external"]))
            for p in ports
        }
        caps = props.get("capabilities") or {}
        memory = f"{int(props['memory'])}m" if props.get("memory") else None
        host_config = api.create_host_config(
            cap_add=caps.get("adds") or None,
            cap_drop=caps.get("drops") or None,
            security_opt=props.get("security_opts") or None,
            tmpfs=props.get("tmpfs") or None,
            mounts=mounts or None,
            port_bindings=port_bindings or None,
            mem_limit=memory,
            # Swap as large as memory: the limit means what it says without swap accounting tricks.
            memswap_limit=memory,
            cgroupns=props.get("cgroupns_mode") or None,
            restart_policy={"Name": props.get("restart") or "no"},
            network_mode=networks[0]["name"] if networks else None,
        )
        networking = None
        if networks:
            first = networks[0]
            networking = api.create_networking_config(
                {
                    first["name"]: api.create_endpoint_config(
                        ipv4_address=first.get("ipv4_address") or None, aliases=first.get("aliases") or None
                    )
                }
            )
        try:
            created = api.create_container(
                props["image"],
                name=name,
                hostname=props.get("hostname") or None,
                command=props.get("command") or None,
                labels=_labels(props.get("labels")),
                environment=props.get("envs") or None,
                host_config=host_config,
                networking_config=networking,
                ports=[(int(p["internal"]), p.get("protocol") or "tcp") for p in ports] or None,
            )
            for extra in networks[1:]:
                api.connect_container_to_network(
                    created["Id"],
                    extra["name"],
                    ipv4_address=extra.get("ipv4_address") or None,
                    aliases=extra.get("aliases") or None,
                )
            container = client.containers.get(created["Id"])
            if props.get("must_run", True):
                container.start()
        except docker.errors.APIError as exc:
            raise DockerError(
                f"container {name}: create failed: {exc.explanation or exc}. If the name or "
                "address is taken, remove the stray container (`docker rm -f`) or change the "
                "stack config"
            ) from exc
        if props.get("must_run", True) and props.get("wait_for_systemd"):
            wait_for_systemd(container)
        return CreateResult(id_=container.id, outs=self._outs(props, container))

    @staticmethod
    def _outs(props: Mapping[str, Any], container: Any) -> dict[str, Any]:
        container.reload()
        nets = container.attrs["NetworkSettings"]["Networks"] or {}
        network_data = [
            {
                "network_name": n,
                "ip_address": d.get("IPAddress") or d.get("IPAMConfig", {}).get("IPv4Address"),
                "gateway": d.get("Gateway"),
            }
            for n, d in sorted(nets.items())
        ]
        return {**_inputs(props), "container_id": container.id, "network_data": network_data}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _diff(olds, news, self.UPDATABLE, frozenset({"container_id", "network_data"}))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = _client()
        try:
            container = client.containers.get(id_)
        except docker.errors.NotFound:
            raise DockerError(
                f"container {news.get('name')} is gone: run `pulumi refresh` (make stack-refresh) "
                "and `up` again to recreate it"
            ) from None
        memory = f"{int(news['memory'])}m" if news.get("memory") else None
        try:
            container.update(
                mem_limit=memory, memswap_limit=memory, restart_policy={"Name": news.get("restart") or "no"}
            )
            if news.get("must_run", True) and container.status != "running":
                container.start()
                if news.get("wait_for_systemd"):
                    wait_for_systemd(container)
        except docker.errors.APIError as exc:
            raise DockerError(f"container {news.get('name')}: update failed: {exc.explanation or exc}") from exc
        return UpdateResult(outs=self._outs(news, container))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            container = _client().containers.get(id_)
        except docker.errors.NotFound:
            return _gone()
        outs = self._outs(props, container)
        attrs = container.attrs
        memory = attrs["HostConfig"].get("Memory") or 0
        outs.update(
            name=attrs["Name"].lstrip("/"),
            image=attrs["Config"]["Image"],
            hostname=attrs["Config"].get("Hostname"),
            labels=[
                x
                for x in _label_items(attrs["Config"].get("Labels") or {})
                if x["label"] in _labels(props.get("labels"))
            ],
            memory=memory // (1024 * 1024) if memory else props.get("memory"),
            restart=(attrs["HostConfig"].get("RestartPolicy") or {}).get("Name") or "no",
        )
        addresses = {d["network_name"]: d["ip_address"] for d in outs["network_data"]}
        outs["networks_advanced"] = [
            {**n, "ipv4_address": addresses.get(n["name"], "")} if n.get("ipv4_address") else n
            for n in props.get("networks_advanced") or []
        ]
        if props.get("must_run", True) and container.status != "running":
            # A stopped host shows up as drift; the next `up` starts it again (an in-place update).
            outs["must_run"] = False
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            # Force: systemd ignores SIGTERM as PID 1; anonymous volumes go, named volumes stay.
            _client().api.remove_container(id_, force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(f"container {props.get('name')}: remove failed: {exc.explanation or exc}") from exc


class Container(Resource, module="docker", name="Container"):
    name: pulumi.Output[str]
    container_id: pulumi.Output[str]
    hostname: pulumi.Output[str]
    labels: pulumi.Output[list[dict[str, str]]]
    ports: pulumi.Output[list[dict[str, Any]]]
    memory: pulumi.Output[int]
    network_data: pulumi.Output[list[dict[str, str]]]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        image: pulumi.Input[str],
        hostname: str | None = None,
        labels: Sequence[Mapping[str, str]] = (),
        networks_advanced: Sequence[Mapping[str, Any]] = (),
        ports: Sequence[Mapping[str, Any]] = (),
        volumes: Sequence[Mapping[str, Any]] = (),
        memory: int | None = None,
        capabilities: Mapping[str, Sequence[str]] | None = None,
        security_opts: Sequence[str] = (),
        tmpfs: Mapping[str, str] | None = None,
        cgroupns_mode: str | None = None,
        command: Sequence[str] = (),
        envs: Sequence[str] = (),
        restart: str = "unless-stopped",
        must_run: bool = True,
        wait_for_systemd: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            ContainerProvider(),
            resource_name,
            {
                "name": name,
                "image": image,
                "hostname": hostname,
                "labels": [dict(x) for x in labels],
                "networks_advanced": [dict(n) for n in networks_advanced],
                "ports": [dict(p) for p in ports],
                "volumes": [dict(v) for v in volumes],
                "memory": memory,
                "capabilities": {k: list(v) for k, v in (capabilities or {}).items()},
                "security_opts": list(security_opts),
                "tmpfs": dict(tmpfs or {}),
                "cgroupns_mode": cgroupns_mode,
                "command": list(command),
                "envs": list(envs),
                "restart": restart,
                "must_run": must_run,
                "wait_for_systemd": wait_for_systemd,
                "container_id": None,
                "network_data": None,
            },
            opts,
        )
