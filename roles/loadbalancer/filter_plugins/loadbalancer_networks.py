"""Filters for the loadbalancer role's address inputs, run on the control machine with Python's ipaddress.

    loadbalancer_deny_cidrs | loadbalancer_network_problems(loadbalancer_monitoring_addresses)
        -> ["'10.0.0.300/32' is not an IPv4 or IPv6 address or network", ...]   (preflight asserts it is empty)
    loadbalancer_deny_cidrs | loadbalancer_networks
        -> ["198.51.100.0/24", ...]   (what nginx.conf.j2 writes: host bits cleared, each network once)

ansible.utils.ipaddr would need netaddr, which the control machine does not have; ipaddress is enough here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(entry: Any) -> Network:
    text = str(entry)
    # ipaddress takes an IPv6 zone (fe80::1%eth0), nginx does not: refused here rather than at `nginx -t`.
    if "%" in text:
        raise ValueError("carries an IPv6 zone index, which nginx cannot match")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError("is not an IPv4 or IPv6 address or network") from None


def network_problems(entries: Iterable[Any], monitoring_addresses: Iterable[Any] = ()) -> list[str]:
    """One line per unusable deny entry: not a network, the whole address space, or one holding a
    monitoring host (whose probes must keep reaching the shop)."""
    monitors = []
    for address in monitoring_addresses:
        try:
            monitors.append(ipaddress.ip_address(str(address)))
        except ValueError:
            continue  # named by address_problems under its own variable
    problems = []
    for entry in entries:
        try:
            net = _network(entry)
        except ValueError as exc:
            problems.append(f"'{entry}' {exc}")
            continue
        if net.prefixlen == 0:
            problems.append(f"'{entry}' would deny every client")
            continue
        held = [str(m) for m in monitors if m.version == net.version and m in net]
        if held:
            problems.append(f"'{entry}' holds the monitoring host {', '.join(held)}, whose probes would fail")
    return problems


def address_problems(addresses: Iterable[Any]) -> list[str]:
    problems = []
    for address in addresses:
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            problems.append(f"'{address}' is not an IPv4 or IPv6 address")
    return problems


def networks(entries: Iterable[Any]) -> list[str]:
    """The entries as nginx should read them (10.1.2.3/8 -> 10.0.0.0/8), in order, each once."""
    out: list[str] = []
    for entry in entries:
        try:
            text = str(_network(entry))
        except ValueError as exc:
            raise AnsibleFilterError(f"loadbalancer_deny_cidrs: '{entry}' {exc}") from None
        if text not in out:
            out.append(text)
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "loadbalancer_network_problems": network_problems,
            "loadbalancer_address_problems": address_problems,
            "loadbalancer_networks": networks,
        }
