"""The exporters role: each exporter runs, listens on the private address and reads its service."""

import re

import pytest
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    fail_with_journal,
    http_get,
    journal_on_failure,
    private_address,
)

EXPORTERS = {
    # unit: (port, a sample line proving the exporter reached its service; labels allowed)
    "prometheus-node-exporter": (9100, "node_cpu_seconds_total"),
    "prometheus-redis-exporter": (9121, "redis_up 1"),
    "prometheus-mongodb-exporter": (9216, "mongodb_up 1"),
    "prometheus-nginx-exporter": (9113, "nginx_up 1"),
}


@pytest.mark.parametrize("unit", EXPORTERS)
def test_exporter_is_active(host, unit):
    assert_active(host, unit)


@pytest.mark.parametrize("unit", EXPORTERS)
def test_exporter_is_enabled(host, unit):
    assert_enabled(host, unit)


@pytest.mark.parametrize("unit", EXPORTERS)
def test_exporter_listens_on_the_private_address(host, unit):
    assert_listening(host, unit, f"tcp://{private_address(host)}:{EXPORTERS[unit][0]}")


@pytest.mark.parametrize("unit", EXPORTERS)
def test_exporter_config_is_root_only(host, unit):
    assert_file(host, f"/etc/default/{unit}", "root", "root", 0o600)


@pytest.mark.parametrize("unit", EXPORTERS)
def test_exporter_reads_its_service(host, unit):
    port, sample = EXPORTERS[unit]
    url = f"http://{private_address(host)}:{port}/metrics"
    status, body = http_get(host, url, unit, timeout=30, request_timeout=25)
    with journal_on_failure(host, unit):
        assert status == 200, body
    name, _, value = sample.partition(" ")
    pattern = rf"^{name}(\{{[^}}]*\}})? {value}$" if value else rf"^{name}\b"
    if not re.search(pattern, body, re.MULTILINE):
        hint = ""
        if unit == "prometheus-mongodb-exporter" and not host.file("/usr/local/bin/mongodb_exporter").exists:
            hint = ("\nDebian's prometheus-mongodb-exporter 1.0.0 (2018, mgo driver) cannot connect to FerretDB "
                    "(`no reachable servers`, even without auth). Fix: build percona/mongodb_exporter into "
                    ".tools/bin/mongodb_exporter (toolchain); the role then installs and runs it instead.")
        fail_with_journal(host, unit, f"{unit} metrics lack {sample!r}{hint}")
