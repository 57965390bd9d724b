"""The real thing: Automation API -> Pulumi CLI -> our language host -> dynamic providers -> Docker.

Every test owns a throwaway stack (own name, name prefix, subnet, loopback ports and state folder),
so a running dev/staging/production environment is never touched. Each test cleans up after itself,
by label if `destroy` itself failed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from stack import cli
from tests.stack.conftest import ThrowawayStack, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def up_ops(stack: ThrowawayStack) -> dict[str, list[str]]:
    """Run `up`; return {op: [resource names]} for everything that was not `same`."""
    events: list[Any] = []
    stack.cli.up(stack.name, stack.paths, stack.config, quiet=True, on_event=events.append)
    ops: dict[str, list[str]] = {}
    for e in events:
        if e.res_outputs_event is not None:
            md = e.res_outputs_event.metadata
            if md.op != auto.OpType.SAME and not md.type.startswith(("pulumi:pulumi:", "pulumi:providers:")):
                ops.setdefault(md.op.value, []).append(md.urn.rsplit("::", 1)[1])
    return {k: sorted(v) for k, v in ops.items()}


def systemd_states(stack: ThrowawayStack) -> dict[str, str]:
    states = {}
    for c in stack.containers():
        out = c.exec_run(["systemctl", "is-system-running", "--wait"]).output.decode().strip()
        if out != "running":
            failed = c.exec_run(["systemctl", "--failed", "--no-legend"]).output.decode()
            out = f"{out}; failed units: {failed.strip()}"
        states[c.name] = out
    return states


def ids(stack: ThrowawayStack) -> dict[str, str]:
    return {c.name: c.id for c in stack.containers()}


def test_up_boots_every_host_and_a_second_up_changes_nothing(throwaway: ThrowawayStack) -> None:
    created = up_ops(throwaway)
    p = throwaway.prefix
    hosts = ["app-1", "data-1", "lb-1", "monitoring-1", "worker-1"]
    assert created == {
        "create": sorted(
            [
                p,
                f"{p}-net",
                *(f"{p}-{s}" for s in ("backups", "mongodb", "perses", "prometheus", "redis")),
                *(f"{p}-{h}" for h in hosts),
                *(f"{p}-{h}-container" for h in hosts),
            ]
        )
    }
    assert systemd_states(throwaway) == {f"{p}-{h}": "running" for h in hosts}

    inventory = yaml.safe_load(throwaway.paths.inventory(throwaway.name).read_text())
    lb = inventory["all"]["children"]["lb"]["hosts"]["lb-1"]
    assert lb["ansible_host"] == f"{p}-lb-1"
    live = throwaway.docker.containers.get(f"{p}-lb-1")
    assert live.attrs["NetworkSettings"]["Networks"][f"{p}-net"]["IPAddress"] == lb["private_address"]
    assert live.labels["scalemart.env"] == "dev" and live.labels["scalemart.stack"] == throwaway.name
    bind = throwaway.config["scalemart:publish"]["lb"]
    assert live.attrs["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": bind.split(":")[1]}]
    }

    assert up_ops(throwaway) == {}, "a second up must change nothing"

    throwaway.down(purge=True)
    assert throwaway.leftovers() == []
    assert not throwaway.paths.inventory(throwaway.name).exists()


@pytest.fixture
def two_apps(throwaway: ThrowawayStack) -> ThrowawayStack:
    throwaway.config["scalemart:hosts"]["app"]["count"] = 2
    return throwaway


def test_raising_app_replicas_from_two_to_three_adds_exactly_one_host(two_apps: ThrowawayStack) -> None:
    stack = two_apps
    up_ops(stack)
    before = ids(stack)
    stack.config["scalemart:hosts"]["app"]["count"] = 3
    p = stack.prefix
    assert up_ops(stack) == {"create": [f"{p}-app-3", f"{p}-app-3-container"]}
    after = ids(stack)
    assert {k: after[k] for k in before} == before, "existing hosts must not be replaced"
    assert sorted(set(after) - set(before)) == [f"{p}-app-3"]
    inventory = yaml.safe_load(stack.paths.inventory(stack.name).read_text())
    assert sorted(inventory["all"]["children"]["app"]["hosts"]) == ["app-1", "app-2", "app-3"]
    stack.down(purge=True)
    assert stack.leftovers() == []


def test_refresh_sees_a_removed_container_and_the_next_up_recreates_it(throwaway: ThrowawayStack) -> None:
    up_ops(throwaway)
    victim = f"{throwaway.prefix}-worker-1"
    throwaway.docker.containers.get(victim).remove(force=True)
    refreshed = throwaway.stack().refresh(color="never")
    assert refreshed.summary.resource_changes.get("delete") == 1, refreshed.stdout
    assert up_ops(throwaway) == {"create": [f"{victim}-container"]}
    assert systemd_states(throwaway)[victim] == "running"


def test_memory_change_updates_in_place_and_image_change_replaces(throwaway: ThrowawayStack, base_image: str) -> None:
    up_ops(throwaway)
    before = ids(throwaway)
    p = throwaway.prefix
    throwaway.config["scalemart:hosts"]["worker"]["memory"] = "160m"
    assert up_ops(throwaway) == {"update": [f"{p}-worker-1-container"]}
    assert ids(throwaway) == before
    assert throwaway.docker.containers.get(f"{p}-worker-1").attrs["HostConfig"]["Memory"] == 160 * 1024 * 1024

    # Same image by another reference: a creation-only input, so every host is replaced.
    throwaway.config["scalemart:image"] = "scalemart-base:latest"
    replaced = up_ops(throwaway)
    hosts = sorted(f"{p}-{h}-container" for h in ("app-1", "data-1", "lb-1", "monitoring-1", "worker-1"))
    assert replaced == {"replace": hosts, "create-replacement": hosts, "delete-replaced": hosts}, replaced
    assert not set(ids(throwaway).values()) & set(before.values())


def test_down_keeps_data_volumes_unless_purged(throwaway: ThrowawayStack) -> None:
    up_ops(throwaway)
    data = throwaway.docker.containers.get(f"{throwaway.prefix}-data-1")
    assert data.exec_run(["sh", "-c", "echo kept > /var/lib/ferretdb/marker"]).exit_code == 0
    throwaway.down(purge=False)
    assert throwaway.containers() == [] and throwaway.networks() == []
    assert len(throwaway.volumes()) == 5

    up_ops(throwaway)
    data = throwaway.docker.containers.get(f"{throwaway.prefix}-data-1")
    assert data.exec_run(["cat", "/var/lib/ferretdb/marker"]).output.decode().strip() == "kept"

    throwaway.down(purge=True)
    assert throwaway.leftovers() == []


@pytest.mark.parametrize(
    ("key", "value", "reported"),
    [
        ("scalemart:hosts", {"app": {"count": 0, "memory": "128m"}}, "scalemart:hosts.app.count"),
        ("scalemart:publish", {"lb": "127.0.0.1:80x", "perses": "3000"}, "scalemart:publish.lb"),
        ("scalemart:environment", "qa", "scalemart:environment"),
        ("scalemart:subnet", "DOCKER_BRIDGE", "scalemart:subnet"),
    ],
)
def test_bad_config_stops_before_any_resource_is_created(
    throwaway: ThrowawayStack, key: str, value: Any, reported: str
) -> None:
    if value == "DOCKER_BRIDGE":
        bridge = throwaway.docker.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
        value = bridge.replace(".0.0/16", ".9.0/24")
    if key == "scalemart:hosts":
        value = {**throwaway.config[key], **value}
    throwaway.config[key] = value
    with pytest.raises(auto.CommandError) as info:
        throwaway.cli.up(throwaway.name, throwaway.paths, throwaway.config, quiet=True)
    message = str(info.value)
    assert f"{reported}: " in message and "Fix: " in message, message
    assert "Traceback" not in message, "a config error is a message, not a stack trace"
    assert throwaway.leftovers() == []
    state = throwaway.stack().export_stack().deployment.get("resources") or []
    assert [r["type"] for r in state if r["type"] != "pulumi:pulumi:Stack"] == []


def test_a_dead_engine_stops_before_any_resource_with_the_fix(
    throwaway: ThrowawayStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(auto.CommandError) as info:
        throwaway.cli.up(throwaway.name, throwaway.paths, throwaway.config, quiet=True)
    message = str(info.value)
    assert "no Docker engine answers" in message and "DOCKER_HOST" in message, message
    assert "Traceback" not in message, "a dead engine is a message, not a stack trace"
    monkeypatch.delenv("DOCKER_HOST")
    state = throwaway.stack().export_stack().deployment.get("resources") or []
    assert [r["type"] for r in state if r["type"] != "pulumi:pulumi:Stack"] == []


class DockerTcpForwarder:
    """A stand-in remote engine: tcp://127.0.0.1:PORT forwarded to the local engine's socket."""

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path
        self.port = free_port()
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> DockerTcpForwarder:
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, family=socket.AF_INET), self.loop
        )
        self.thread.start()
        self.server.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.result().close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def remote_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerTcpForwarder]:
    with DockerTcpForwarder() as forwarder:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{forwarder.port}")
        yield forwarder


def test_up_and_destroy_through_docker_host(throwaway: ThrowawayStack, remote_engine: DockerTcpForwarder) -> None:
    """Providers and the subnet check talk to whatever DOCKER_HOST names, not the local socket."""
    assert "create" in up_ops(throwaway)
    assert remote_engine.connections > 0, "nothing went through DOCKER_HOST"
    assert systemd_states(throwaway) == {c.name: "running" for c in throwaway.containers()}
    before = remote_engine.connections
    throwaway.down(purge=True)
    assert remote_engine.connections > before
    assert throwaway.leftovers() == []


def test_cli_refuses_an_unknown_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["outputs", "qa"]) == 2
    assert "ENV must be one of dev, production, staging" in capsys.readouterr().err
