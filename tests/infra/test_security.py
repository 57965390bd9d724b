"""The security audit of an environment: what listens where, who may read the secrets, and that nothing
published answers without its credential.

- Every listening socket (TCP and UDP) on every host is in the design's list: the services of
  `SERVICES` and the internal listeners below, at their address; anything else fails, named.
- Every file that holds a secret is owned and moded as its role writes it.
- Every URL the environment publishes refuses a request without its credential where one is configured,
  and the shop's balancer never hands out the app's own /metrics.
"""

from __future__ import annotations

import time

import httpx
import pytest

from dashboards.perses import PROJECT
from tests.infra.conftest import SERVICES, Environment
from toolchain.common import BUILD

# Listeners that are not a service of their own: (port name in scalemart_ports, bind, protocols, why).
# "optional": there only when the environment configures it.
INTERNAL: dict[str, list[tuple[str, str, tuple[str, ...], str]]] = {
    "monitoring": [
        ("alertmanager_cluster", "private", ("tcp", "udp"), "Alertmanager's gossip with its peers"),
        ("sms_notifier", "loopback", ("tcp",), "optional: the SMS notifier, called by Alertmanager only"),
    ],
    "data": [
        ("ferretdb_metrics", "private", ("tcp",), "FerretDB's debug handler, where Prometheus scrapes it"),
        ("redis", "loopback", ("tcp",), "Redis on loopback too: its exporter and the backups read it there"),
    ],
    "lb": [("lb_status", "private", ("tcp",), "nginx's stub_status, read by the nginx exporter")],
}
# Docker's embedded DNS answers inside every container on this address (its ports are random).
DOCKER_DNS = "127.0.0.11"

# Files holding a secret: (group, path, owner, group, mode).
SECRET_FILES = [
    ("app", "/etc/scalemart/scalemart.env", "root", "root", 0o600),
    ("worker", "/etc/scalemart/scalemart.env", "root", "root", 0o600),
    ("data", "/etc/redis/redis.conf", "redis", "redis", 0o640),
    ("data", "/etc/ferretdb/ferretdb.env", "root", "root", 0o600),
    ("data", "/etc/scalemart/backups.key", "root", "root", 0o600),
    ("data", "/etc/scalemart/backups.json", "root", "root", 0o600),
    ("data", "/etc/default/prometheus-redis-exporter", "root", "root", 0o600),
    ("data", "/etc/default/prometheus-mongodb-exporter", "root", "root", 0o600),
    ("monitoring", "/etc/prometheus/prometheus.yml", "root", "prometheus", 0o640),
    ("monitoring", "/etc/prometheus/web.yml", "root", "prometheus", 0o640),
    ("monitoring", "/etc/prometheus/alertmanager.yml", "root", "prometheus", 0o640),
    ("monitoring", "/etc/prometheus/alertmanager-web.yml", "root", "prometheus", 0o640),
    ("monitoring", "/etc/prometheus/amtool-http.yml", "root", "root", 0o600),
    ("monitoring", "/etc/perses/config.yaml", "root", "perses", 0o640),
    # Provisioned by the perses role as <kind>-<name>.json: Prometheus's password (the datasource's global
    # secret) and the admin's password (perses_admin_user, `admin`).
    ("monitoring", "/etc/perses/provisioning/globalsecret-prometheus-basic-auth.json", "root", "perses", 0o640),
    ("monitoring", "/etc/perses/provisioning/user-admin.json", "root", "perses", 0o640),
    # The Twilio credentials and the notifier's bearer token; optional, see INSTALLED_WITH.
    ("monitoring", "/etc/default/scalemart-sms-notifier", "root", "root", 0o600),
    ("all", "/etc/prometheus/exporters-web.yml", "root", "prometheus", 0o640),
]
# Secret files of an optional service: required where the file that installs the service is, checked wherever
# they are. The SMS notifier runs only when alertmanager_sms_notifier is set (the e2e stage sets it).
INSTALLED_WITH = {
    "/etc/default/scalemart-sms-notifier": "/etc/systemd/system/scalemart-sms-notifier.service",
}


def _expected(environment: Environment, host_name: str) -> tuple[set[tuple[str, str, int]], set[tuple[str, str, int]]]:
    """(required, allowed) listeners of a host as (protocol, address, port)."""
    private = environment.hostvars(host_name)["private_address"]
    where = {"private": private, "loopback": "127.0.0.1", "published": "0.0.0.0"}  # noqa: S104 - checking
    required: set[tuple[str, str, int]] = set()
    optional: set[tuple[str, str, int]] = set()
    for group, services in SERVICES.items():
        if host_name not in environment.group(group):
            continue
        required |= {("tcp", where[bind], environment.port(port)) for _unit, port, bind in services if port}
        for port, bind, protocols, why in INTERNAL.get(group, []):
            target = optional if why.startswith("optional") else required
            target |= {(proto, where[bind], environment.port(port)) for proto in protocols}
    return required, required | optional


def _listeners(host) -> dict[tuple[str, str, int], str]:  # type: ignore[no-untyped-def]
    """(protocol, address, port) -> the ss line, with the owning process."""
    found = {}
    for proto, flag in (("tcp", "-Htlnp"), ("udp", "-Hulnp")):
        for line in host.run(f"ss {flag}").stdout.splitlines():
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            address = address.strip("[]").split("%")[0]
            if address != DOCKER_DNS:
                found[(proto, "0.0.0.0" if address in ("*", "::") else address, int(port))] = line  # noqa: S104
    return found


def test_every_listening_socket_is_in_the_design(environment: Environment, host_name: str) -> None:
    required, allowed = _expected(environment, host_name)
    found = _listeners(environment.host(host_name))
    unexpected = sorted(set(found) - allowed)
    log = BUILD / environment.name / "logs" / "security-audit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(
            f"{time.strftime('%H:%M:%S')} {host_name}: {len(found)} listeners, outside the design: "
            f"{[found[k] for k in unexpected] or 'none'}\n"
        )
    missing = sorted(required - set(found))
    # (an exim4 on 127.0.0.1:25, pulled in by cron's recommends, was the first thing this found)
    assert not unexpected, (
        f"{host_name} listens where the design does not say so: {[found[k] for k in unexpected]}; "
        "add it to SERVICES/INTERNAL in tests/infra with its reason, or stop it"
    )
    assert not missing, f"{host_name} does not listen on {missing}"


@pytest.mark.parametrize(
    ("group", "path", "owner", "group_owner", "mode"), SECRET_FILES, ids=[f"{g}:{p}" for g, p, *_ in SECRET_FILES]
)
def test_every_secret_file_is_readable_only_by_its_service(
    environment: Environment, group: str, path: str, owner: str, group_owner: str, mode: int
) -> None:
    hosts = environment.group(group)
    assert hosts, f"no {group} host"
    checked = 0
    for host_name in hosts:
        host = environment.host(host_name)
        f = host.file(path)
        marker = INSTALLED_WITH.get(path)
        if marker and not f.exists and not host.file(marker).exists:
            continue  # the optional service is not installed here
        checked += 1
        assert f.exists, f"{path} is missing on {host_name}"
        assert (f.user, f.group, f.mode) == (owner, group_owner, mode), (
            f"{path} on {host_name} is {f.user}:{f.group} {oct(f.mode)}; it holds a secret: "
            f"{owner}:{group_owner} {oct(mode)}"
        )
        assert f.mode & 0o007 == 0, f"{path} on {host_name} is readable by every user"
    if not checked:
        pytest.skip(f"{path}: its service ({INSTALLED_WITH[path]}) is installed on no {group} host")


# A path of each published service that needs its credential.
PROTECTED = {
    "prometheus": "/api/v1/query?query=up",
    "alertmanager": "/api/v2/status",
    "perses": f"/api/v1/projects/{PROJECT}/dashboards",
    "shop": "/api/admin/stats",
}


def test_no_published_url_answers_without_its_credential(environment: Environment) -> None:
    urls = environment.outputs.get("urls", {})
    assert urls, "the stack outputs have no URLs"
    unknown = sorted(set(urls) - set(PROTECTED))
    assert not unknown, f"published services with no credential check here: {unknown}; add them to PROTECTED"
    for name, url in urls.items():
        r = httpx.get(str(url).rstrip("/") + PROTECTED[name], timeout=10)
        assert r.status_code == 401, f"{name} at {url} answered {r.status_code} without a credential"


# Paths of a published service that must not answer there at all: the app's Prometheus text (revenue, stock,
# token failures) is scraped from each app host on the private network, and the balancer answers it 404.
NOT_PUBLISHED = {"shop": ["/metrics", "/metrics/"]}


def test_the_shop_does_not_publish_the_apps_metrics(environment: Environment) -> None:
    urls = environment.outputs.get("urls", {})
    for name in sorted(NOT_PUBLISHED.keys() & urls.keys()):  # a service not published exposes nothing
        url = str(urls[name]).rstrip("/")
        for path in NOT_PUBLISHED[name]:
            r = httpx.get(url + path, timeout=10)
            assert r.status_code != 200 and "scalemart_" not in r.text, (
                f"{name} at {url} answered {path} with {r.status_code} through the published balancer: {r.text[:300]}"
            )
