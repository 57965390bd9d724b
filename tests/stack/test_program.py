"""The program under `pulumi.runtime.set_mocks`: policies checked on every resource, failures name the URN.

The entry point runs as it does under the engine (config read once from the stack's config), with
the committed Pulumi.<env>.yaml loaded as that config; only the Docker engine is not asked.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.runtime
import pytest

from stack import config as sc
from tests.stack.conftest import ENVIRONMENTS, committed_config

IMAGE = "scalemart-base:test"
CONTAINER = "pulumi-python:dynamic/docker:Container"
NETWORK = "pulumi-python:dynamic/docker:Network"
VOLUME = "pulumi-python:dynamic/docker:Volume"


class Mocks(pulumi.runtime.Mocks):
    """Stands in for the engine: echoes inputs as outputs, computes what Docker would."""

    def __init__(self) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args)
        outs = dict(args.inputs)
        if args.typ == CONTAINER:
            outs["container_id"] = f"{args.name}-id"
            outs["network_data"] = [
                {"network_name": n["name"], "ip_address": n["ipv4_address"], "gateway": ""}
                for n in args.inputs.get("networks_advanced", [])
            ]
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Resolved:
    urn: str
    typ: str
    inputs: dict[str, Any]


@dataclass
class Run:
    mocks: Mocks
    resources: list[Resolved]
    hosts: dict[str, dict[str, Any]]
    inventory: dict[str, Any]
    urls: dict[str, str]

    def of_type(self, typ: str) -> list[Resolved]:
        return [r for r in self.resources if r.typ == typ]

    def hosts_in(self, group: str) -> list[str]:
        return sorted(self.inventory["all"]["children"][group]["hosts"])


def run_program(stack: str, config: dict[str, Any], mocks: Mocks | None = None) -> Run:
    """Run stack/__main__.py's main() under mocks with `config` as the stack's config."""
    from stack import __main__ as entry

    mocks = mocks or Mocks()
    # set_mocks and @pulumi.runtime.test use the thread's current loop; an earlier asyncio.run()
    # (the app tests) leaves none, so give each run its own.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project="scalemart", stack=stack, preview=False)
    pulumi.runtime.set_all_config(
        {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in config.items()}
    )
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        env = entry.main(image=IMAGE, other_subnets=[])
        seen["urls"] = env.urls
        urns = pulumi.Output.all(*(r.urn for r in env.resources))

        def keep(args: list[Any]) -> None:
            seen["urns"], seen["hosts"], seen["inventory"] = args

        return pulumi.Output.all(urns, env.host_info, env.inventory).apply(keep)

    try:
        program()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    by_name = {a.name: a for a in mocks.registered}
    resources = [
        Resolved(urn=urn, typ=by_name[urn.rsplit("::", 1)[1]].typ, inputs=dict(by_name[urn.rsplit("::", 1)[1]].inputs))
        for urn in seen["urns"]
    ]
    return Run(mocks=mocks, resources=resources, hosts=seen["hosts"], inventory=seen["inventory"], urls=seen["urls"])


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {env: run_program(env, committed_config(env)) for env in ENVIRONMENTS}


def check_all(resources: list[Resolved], policy: Callable[[Resolved], str | None]) -> None:
    failures = [f"{r.urn}: {problem}" for r in resources if (problem := policy(r))]
    assert not failures, "\n".join(failures)


def test_staging_has_exactly_two_app_hosts_and_two_workers(runs: dict[str, Run]) -> None:
    run = runs["staging"]
    assert run.hosts_in("app") == ["app-1", "app-2"]
    assert run.hosts_in("worker") == ["worker-1", "worker-2"]
    apps = [r for r in run.of_type(CONTAINER) if {"label": "scalemart.role", "value": "app"} in r.inputs["labels"]]
    assert len(apps) == 2, [r.urn for r in apps]


def test_production_has_at_least_three_app_hosts_and_four_workers(runs: dict[str, Run]) -> None:
    run = runs["production"]
    assert len(run.hosts_in("app")) >= 3
    assert len(run.hosts_in("worker")) >= 4


def test_dev_is_five_hosts_one_per_role(runs: dict[str, Run]) -> None:
    assert sorted(runs["dev"].hosts) == ["app-1", "data-1", "lb-1", "monitoring-1", "worker-1"]
    assert len(runs["dev"].of_type(CONTAINER)) == 5


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_carries_the_environment_label(runs: dict[str, Run], env: str) -> None:
    def policy(r: Resolved) -> str | None:
        labels = {x["label"]: x["value"] for x in r.inputs.get("labels", [])}
        if labels.get("scalemart.env") != env:
            return f"label scalemart.env is {labels.get('scalemart.env')!r}, expected {env!r}"
        if labels.get("scalemart.stack") != env:
            return f"label scalemart.stack is {labels.get('scalemart.stack')!r}, expected {env!r}"
        return None

    assert len(runs[env].resources) == 1 + len(sc.VOLUMES) + len(runs[env].hosts)
    check_all(runs[env].resources, policy)


def loopback_only(r: Resolved) -> str | None:
    for p in r.inputs.get("ports", []):
        if p.get("ip") != "127.0.0.1":
            return f"port {p.get('internal')} published on {p.get('ip')!r}; only 127.0.0.1 is configured"
    return None


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nothing_is_published_beyond_loopback_unless_configured(runs: dict[str, Run], env: str) -> None:
    check_all(runs[env].resources, loopback_only)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_load_balancer_and_monitoring_publish_ports(runs: dict[str, Run], env: str) -> None:
    published = {
        r.urn.rsplit("::", 1)[1]: sorted(int(p["internal"]) for p in r.inputs["ports"])
        for r in runs[env].of_type(CONTAINER)
        if r.inputs["ports"]
    }
    prefix = f"sm-{env}"
    expected_monitoring = [8080] + ([9090, 9093] if env == "dev" else [])
    assert published == {
        f"{prefix}-lb-1-container": [80],
        f"{prefix}-monitoring-1-container": sorted(expected_monitoring),
    }


def test_a_configured_public_bind_is_honoured_and_nothing_else_moves() -> None:
    config = copy.deepcopy(committed_config("dev"))
    config["scalemart:publish"]["lb"] = "0.0.0.0:18080"  # noqa: S104 - the explicit opt-in under test
    run = run_program("dev", config)
    binds = {(p["ip"], int(p["external"])) for r in run.of_type(CONTAINER) for p in r.inputs["ports"]}
    assert ("0.0.0.0", 18080) in binds  # noqa: S104
    assert all(ip == "127.0.0.1" for ip, port in binds if port != 18080)
    # A policy failure names the offending resource by URN, and only that one.
    with pytest.raises(AssertionError) as failed:
        check_all(run.resources, loopback_only)
    lines = str(failed.value).splitlines()[:-1]  # pytest appends the `assert not failures` line
    assert len(lines) == 1 and lines[0].startswith("urn:pulumi:"), lines
    assert "::sm-dev-lb-1-container: port 80" in lines[0] and "published on '0.0.0.0'" in lines[0], lines


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_hosts_run_systemd_from_the_base_image_with_memory_limits(runs: dict[str, Run], env: str) -> None:
    def policy(r: Resolved) -> str | None:
        i = r.inputs
        if r.typ != CONTAINER:
            return None
        problems = []
        if i["image"] != IMAGE:
            problems.append(f"image {i['image']!r}")
        if not i.get("memory") or i["memory"] < 64:
            problems.append(f"memory limit {i.get('memory')!r} MB")
        if i["capabilities"] != {"adds": ["SYS_ADMIN"]} or i["cgroupns_mode"] != "host":
            problems.append("missing the systemd flags (SYS_ADMIN, cgroupns host)")
        if not any(v.get("host_path") == "/sys/fs/cgroup" and v.get("read_only") for v in i["volumes"]):
            problems.append("/sys/fs/cgroup not mounted read-only")
        if sorted(i["tmpfs"]) != ["/run", "/run/lock", "/tmp"]:  # noqa: S108
            problems.append(f"tmpfs {sorted(i['tmpfs'])}")
        return "; ".join(problems) or None

    check_all(runs[env].resources, policy)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_host_has_a_static_unique_address_in_the_subnet(runs: dict[str, Run], env: str) -> None:
    import ipaddress

    subnet = ipaddress.ip_network(committed_config(env)["scalemart:subnet"])
    addresses = [h["address"] for h in runs[env].hosts.values()]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in subnet for a in addresses)
    for r in runs[env].of_type(CONTAINER):
        nets = r.inputs["networks_advanced"]
        assert len(nets) == 1 and nets[0]["ipv4_address"], f"{r.urn}: no static address"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_volumes_mount_into_the_data_and_monitoring_hosts_only(runs: dict[str, Run], env: str) -> None:
    mounted = {
        r.urn.rsplit("::", 1)[1]: sorted(v["volume_name"] for v in r.inputs["volumes"] if v.get("volume_name"))
        for r in runs[env].of_type(CONTAINER)
    }
    p = f"sm-{env}"
    assert {k: v for k, v in mounted.items() if v} == {
        f"{p}-data-1-container": [f"{p}-backups", f"{p}-mongodb", f"{p}-redis"],
        f"{p}-monitoring-1-container": [f"{p}-perses", f"{p}-prometheus"],
    }
    assert sorted(r.inputs["name"] for r in runs[env].of_type(VOLUME)) == sorted(f"{p}-{s}" for s in sc.VOLUMES)


def test_inventory_has_the_groups_hostvars_and_environment_vars(runs: dict[str, Run]) -> None:
    inv = runs["staging"].inventory
    assert sorted(inv["all"]["children"]) == sorted(sc.ROLES)
    app1 = inv["all"]["children"]["app"]["hosts"]["app-1"]
    assert app1 == {
        "ansible_connection": "community.docker.docker",
        "ansible_host": "sm-staging-app-1",
        "private_address": "172.28.20.100",
        "scalemart_role": "app",
    }
    v = inv["all"]["vars"]
    assert v["scalemart_environment"] == "staging"
    assert v["scalemart_ports"]["app"] == 8000
    assert v["scalemart_sentry_traces_sample_rate"] == 0.5 and v["scalemart_log_level"] == "debug"
    assert v["scalemart_lb_rate_limit_per_second"] == 0 and v["scalemart_lb_rate_limit_burst"] == 200
    assert v["scalemart_published"]["lb"]["url"] == "http://127.0.0.1:8180/"


def test_child_names_derive_from_the_component_name(runs: dict[str, Run]) -> None:
    def policy(r: Resolved) -> str | None:
        name = r.urn.rsplit("::", 1)[1]
        return None if name.startswith("sm-dev-") else "name does not start with the component name sm-dev-"

    check_all(runs["dev"].resources, policy)


def test_raising_app_replicas_adds_one_host_and_changes_no_other_input() -> None:
    config = copy.deepcopy(committed_config("staging"))
    before = run_program("staging", config)
    config["scalemart:hosts"]["app"]["count"] = 3
    after = run_program("staging", config)
    old = {r.urn: r.inputs for r in before.resources}
    new = {r.urn: r.inputs for r in after.resources}
    added = sorted(set(new) - set(old))
    assert [u.rsplit("::", 1)[1] for u in added] == ["sm-staging-app-3-container"]
    assert not set(old) - set(new)
    changed = [
        u
        for u in old
        if json.dumps(old[u], sort_keys=True, default=str) != json.dumps(new[u], sort_keys=True, default=str)
    ]
    assert not changed, f"inputs changed: {changed}"


def test_bad_config_stops_before_any_resource_is_registered() -> None:
    config = copy.deepcopy(committed_config("staging"))
    config["scalemart:hosts"]["app"]["count"] = 0
    mocks = Mocks()
    with pytest.raises(sc.ConfigError, match=r"scalemart:hosts\.app\.count: .* Fix: "):
        run_program("staging", config, mocks)
    assert mocks.registered == [], [a.name for a in mocks.registered]


def test_urls_name_the_shop_and_perses(runs: dict[str, Run]) -> None:
    assert runs["dev"].urls == {
        "shop": "http://127.0.0.1:8080/",
        "perses": "http://127.0.0.1:3000/",
        "prometheus": "http://127.0.0.1:9090/",
        "alertmanager": "http://127.0.0.1:9093/",
    }
    assert runs["production"].urls == {"shop": "http://127.0.0.1:8280/", "perses": "http://127.0.0.1:3200/"}
