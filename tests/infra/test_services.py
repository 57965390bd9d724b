"""Every service on every host: active, enabled, listening where it should and nowhere else."""

from __future__ import annotations

from tests.infra.conftest import SERVICES, Environment


def _journal(host, unit: str) -> str:  # type: ignore[no-untyped-def]
    return host.run(f"journalctl -u {unit} --no-pager -n 40").stdout


def test_service_is_active_and_enabled(environment: Environment, service_case) -> None:  # type: ignore[no-untyped-def]
    host_name, unit, _port, _bind = service_case
    host = environment.host(host_name)
    svc = host.service(unit)
    assert svc.is_running, f"{unit} is not active on {host_name}:\n{_journal(host, unit)}"
    assert svc.is_enabled, f"{unit} is not enabled on {host_name}"


def test_service_listens_on_its_address(environment: Environment, service_case) -> None:  # type: ignore[no-untyped-def]
    host_name, unit, port, bind = service_case
    if port is None:
        return  # a timer: nothing listens
    address = {
        "private": environment.hostvars(host_name)["private_address"],
        "loopback": "127.0.0.1",
        "published": "0.0.0.0",  # noqa: S104 - checking, not binding
    }[bind]
    host = environment.host(host_name)
    assert host.socket(f"tcp://{address}:{port}").is_listening, (
        f"{unit} does not listen on {address}:{port} on {host_name}:\n{_journal(host, unit)}"
    )


def test_nothing_listens_on_a_wildcard_address(environment: Environment, host_name: str) -> None:
    """Services bind the private address (or loopback), never 0.0.0.0 or ::, unless published."""
    host = environment.host(host_name)
    private = environment.hostvars(host_name)["private_address"]
    published = {
        f"0.0.0.0:{environment.port(port)}"
        for group, services in SERVICES.items()
        if host_name in environment.group(group)
        for _unit, port, bind in services
        if bind == "published" and port
    }
    listeners = host.run("ss -Htln").stdout.splitlines()
    wrong = []
    for line in listeners:
        local = line.split()[3]
        addr = local.rsplit(":", 1)[0].strip("[]").split("%")[0]
        # loopback (Docker's embedded DNS is on 127.0.0.11) or the private address only
        if addr != private and not addr.startswith("127.") and addr != "::1" and local not in published:
            wrong.append(local)
    assert not wrong, f"{host_name} listens on {wrong}; expected only {private} or loopback"


def test_every_group_has_its_hosts(environment: Environment) -> None:
    for group in SERVICES:
        assert environment.group(group), f"the inventory has no host in group {group!r}"
