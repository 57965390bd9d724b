"""The dynamic providers: diff rules (pure) and their CRUD against the real local Docker engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stack import docker_resources as dr
from tests.stack.conftest import free_subnet


def outs(result: Any) -> dict[str, Any]:
    """A provider result's outputs (typed Optional by the SDK; ours always set them)."""
    assert result.outs is not None, f"{result!r} has no outputs"
    return result.outs  # type: ignore[no-any-return]


BASE = {
    "name": "x-app-1",
    "image": "scalemart-base:aaa",
    "hostname": "app-1",
    "labels": [{"label": "scalemart.env", "value": "dev"}],
    "networks_advanced": [{"name": "x-net"}],
    "ports": [],
    "volumes": [],
    "memory": 256,
    "capabilities": {"adds": ["SYS_ADMIN"]},
    "security_opts": [],
    "tmpfs": {},
    "cgroupns_mode": "host",
    "command": [],
    "envs": [],
    "restart": "unless-stopped",
    "must_run": True,
    "wait_for_systemd": True,
    "__provider": "serialised",
}
STORED = {**BASE, "container_id": "abc", "network_data": [{"network_name": "x-net", "ip_address": "1.2.3.4"}]}


def test_container_without_changes_has_no_diff() -> None:
    result = dr.ContainerProvider().diff("abc", STORED, {**BASE, "container_id": None, "network_data": None})
    assert not result.changes and not result.replaces


@pytest.mark.parametrize("key", ["image", "name", "hostname", "labels", "ports", "volumes", "networks_advanced"])
def test_creation_only_change_replaces_deleting_first(key: str) -> None:
    news = {**BASE, key: "changed"}
    result = dr.ContainerProvider().diff("abc", STORED, news)
    assert result.changes and result.replaces == [key] and result.delete_before_replace


@pytest.mark.parametrize("key", ["memory", "restart", "must_run"])
def test_runtime_change_updates_in_place(key: str) -> None:
    news = {**BASE, key: {"memory": 512, "restart": "always", "must_run": False}[key]}
    result = dr.ContainerProvider().diff("abc", STORED, news)
    assert result.changes and result.replaces == [] and not result.delete_before_replace


def test_an_unknown_creation_input_during_preview_means_replace() -> None:
    result = dr.ContainerProvider().diff("abc", STORED, {**BASE, "image": dr.UNKNOWN})
    assert result.replaces == ["image"]


def test_an_unknown_nested_input_means_replace() -> None:
    """A replaced network makes its name unknown inside networks_advanced: the host must follow."""
    news = {**BASE, "networks_advanced": [{"name": dr.UNKNOWN, "ipv4_address": "1.2.3.4"}]}
    assert dr.ContainerProvider().diff("abc", STORED, news).replaces == ["networks_advanced"]


def test_network_and_volume_inputs_are_all_creation_only() -> None:
    net = {"name": "n", "driver": "bridge", "ipam_configs": [{"subnet": "172.28.1.0/24"}], "labels": []}
    assert dr.NetworkProvider().diff("i", {**net, "network_id": "i"}, net).changes is False
    assert dr.NetworkProvider().diff("i", net, {**net, "ipam_configs": [{"subnet": "172.28.2.0/24"}]}).replaces == [
        "ipam_configs"
    ]
    vol = {"name": "v", "driver": "local", "labels": []}
    assert dr.VolumeProvider().diff("v", vol, {**vol, "labels": [{"label": "a", "value": "b"}]}).replaces == ["labels"]


# --- real engine -------------------------------------------------------------------------------------
@pytest.fixture
def names(docker_client: Any) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    made = {"net": f"smpt-{tag}-net", "vol": f"smpt-{tag}-vol", "ctr": f"smpt-{tag}-host"}
    yield made
    for c in docker_client.containers.list(all=True, filters={"name": made["ctr"]}):
        c.remove(force=True)
    for n in docker_client.networks.list(names=[made["net"]]):
        n.remove()
    for v in docker_client.volumes.list(filters={"name": made["vol"]}):
        v.remove(force=True)


def test_network_volume_container_lifecycle_on_the_engine(
    docker_client: Any, base_image: str, names: dict[str, str]
) -> None:
    labels = [{"label": "scalemart.env", "value": "provider-test"}]
    subnet = free_subnet(docker_client)
    net_p, vol_p, ctr_p = dr.NetworkProvider(), dr.VolumeProvider(), dr.ContainerProvider()

    net = net_p.create(
        {"name": names["net"], "driver": "bridge", "labels": labels, "ipam_configs": [{"subnet": subnet}]}
    )
    assert docker_client.networks.get(net.id).attrs["IPAM"]["Config"][0]["Subnet"] == subnet
    assert outs(net_p.read(net.id, outs(net)))["labels"] == labels

    vol = vol_p.create({"name": names["vol"], "driver": "local", "labels": labels})
    # Creating it again adopts the same volume (how data survives `down` without PURGE).
    assert vol_p.create({"name": names["vol"], "driver": "local", "labels": labels}).id == vol.id

    address = subnet.rsplit(".", 1)[0] + ".7"
    props = {
        **BASE,
        "name": names["ctr"],
        "image": base_image,
        "labels": labels,
        "memory": 128,
        "networks_advanced": [{"name": names["net"], "ipv4_address": address, "aliases": ["h"]}],
        "volumes": [
            {"host_path": "/sys/fs/cgroup", "container_path": "/sys/fs/cgroup", "read_only": True},
            {"volume_name": names["vol"], "container_path": "/var/lib/data"},
        ],
        "security_opts": ["seccomp=unconfined", "apparmor=unconfined"],
        "tmpfs": {"/run": "", "/run/lock": "", "/tmp": ""},
    }  # noqa: S108
    ctr = ctr_p.create(props)
    live = docker_client.containers.get(ctr.id)
    assert live.status == "running"
    assert dr._systemd_state(live) in ("running", "degraded")
    assert outs(ctr)["network_data"][0]["ip_address"] == address
    assert live.attrs["HostConfig"]["Memory"] == 128 * 1024 * 1024

    # Refresh sees what is there; a memory change is applied to the live container.
    read = ctr_p.read(ctr.id, outs(ctr))
    assert read.id == ctr.id and outs(read)["memory"] == 128
    assert not ctr_p.diff(ctr.id, outs(read), props).changes
    ctr_p.update(ctr.id, outs(ctr), {**props, "memory": 160})
    assert docker_client.containers.get(ctr.id).attrs["HostConfig"]["Memory"] == 160 * 1024 * 1024

    # A container stopped by hand shows up as drift (must_run) and an update starts it again.
    live.stop(timeout=1)
    drift = outs(ctr_p.read(ctr.id, outs(ctr)))
    assert drift["must_run"] is False
    ctr_p.update(ctr.id, drift, props)
    assert docker_client.containers.get(ctr.id).status == "running"

    # Removed by hand: read reports it gone (empty id) so `pulumi refresh` drops it.
    live.remove(force=True)
    assert ctr_p.read(ctr.id, outs(ctr)).id == ""
    ctr_p.delete(ctr.id, outs(ctr))  # already gone: not an error

    vol_p.delete(vol.id, outs(vol))
    net_p.delete(net.id, outs(net))
    assert vol_p.read(vol.id, outs(vol)).id == "" and net_p.read(net.id, outs(net)).id == ""


def test_a_missing_image_names_the_fix(docker_client: Any, names: dict[str, str]) -> None:
    with pytest.raises(dr.DockerError, match="make bootstrap"):
        dr.ContainerProvider().create({**BASE, "name": names["ctr"], "image": "scalemart-base:does-not-exist"})


@pytest.mark.parametrize("provider", [dr.NetworkProvider, dr.VolumeProvider, dr.ContainerProvider])
def test_a_serialised_provider_loads_without_the_project_on_sys_path(provider: type, tmp_path: Any) -> None:
    """The dynamic-provider process runs elsewhere with its own sys.path; the pickle must still load."""
    import os
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    blob = serialize_provider(provider())
    code = (
        "import base64, sys, dill; p = dill.loads(base64.b64decode(sys.argv[1])); "
        "assert not [m for m in sys.modules if m.startswith('stack')]; print(type(p).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, blob], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == provider.__name__
    assert serialize_provider(provider()) == blob, "serialisation must be deterministic (no spurious diffs)"
