"""The configs the roles wrote are valid, checked with each service's own tool on the host."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Environment

CHECKS = {
    # mtail opens its HTTP port even with --compile_only: a throwaway one on loopback, as the role's check does
    "lb": [
        "nginx -t",
        "mtail --compile_only --logtostderr --address 127.0.0.1 --port 0 --progs /etc/mtail/scalemart_lb.mtail",
    ],
    "monitoring": [
        "promtool check config /etc/prometheus/prometheus.yml",
        "promtool check web-config /etc/prometheus/web.yml /etc/prometheus/alertmanager-web.yml",
        "amtool check-config /etc/prometheus/alertmanager.yml",
        "prometheus-blackbox-exporter --config.check --config.file=/etc/prometheus/blackbox.yml",
    ],
}


@pytest.mark.parametrize("group", sorted(CHECKS))
def test_configs_are_valid(environment: Environment, group: str) -> None:
    for host_name in environment.group(group):
        host = environment.host(host_name)
        for check in CHECKS[group]:
            result = host.run(check)
            assert result.rc == 0, f"`{check}` failed on {host_name}:\n{result.stdout}{result.stderr}"
