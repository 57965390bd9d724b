"""Checks shared by the molecule scenarios' testinfra verifiers.

Every service check that fails prints the unit's journal, so a red scenario says why without
a second run: the helpers below do it for their own checks, and a test checking what a service
answered puts its asserts under `with journal_on_failure(host, unit):`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def journal(host: Any, unit: str, lines: int = 60) -> str:
    out = host.run(f"journalctl -u {unit} --no-pager -n {lines}")
    return f"--- journalctl -u {unit} (last {lines} lines) ---\n{out.stdout}{out.stderr}"


def fail_with_journal(host: Any, unit: str, message: str) -> None:
    pytest.fail(f"{message}\n{journal(host, unit)}", pytrace=False)


@contextmanager
def journal_on_failure(host: Any, unit: str, *errors: type[Exception]) -> Iterator[None]:
    """A failed assert in the block (a wrong answer from `unit`), or one of `errors` (e.g. a client
    library's error), fails the test with the unit's journal. The other helpers' failures pass
    through (pytest.fail is no AssertionError): they carry the journal already."""
    caught: tuple[type[Exception], ...] = (AssertionError, *errors)
    try:
        yield
    except caught as exc:
        # pytest.fail's own exception, `from None`: the report shows the assert once, not again as a chained one.
        raise pytest.fail.Exception(f"{unit} answered wrong: {exc}\n{journal(host, unit)}", pytrace=False) from None


def assert_active(host: Any, unit: str) -> None:
    svc = host.service(unit)
    if not svc.is_running:
        fail_with_journal(host, unit, f"{unit} is not active")


def assert_enabled(host: Any, unit: str) -> None:
    svc = host.service(unit)
    if not svc.is_enabled:
        fail_with_journal(host, unit, f"{unit} is not enabled")


def assert_listening(host: Any, unit: str, address: str, timeout: float = 30) -> None:
    """`address` is like tcp://10.0.0.2:6379; waits because services bind after start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.socket(address).is_listening:
            return
        time.sleep(1)
    sockets = host.run("ss -ltnp").stdout
    fail_with_journal(host, unit, f"{unit} does not listen on {address}; listening sockets:\n{sockets}")


def assert_file(host: Any, path: str, owner: str, group: str, mode: int) -> None:
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    assert (f.user, f.group, f.mode) == (owner, group, mode), (
        f"{path} is {f.user}:{f.group} {oct(f.mode)}, expected {owner}:{group} {oct(mode)}"
    )


def private_address(host: Any) -> str:
    addr = host.ansible.get_variables().get("private_address")
    if addr:
        return str(addr)
    out = host.run("hostname -I").stdout.split()
    assert out, "the host has no address: is the container on a network?"
    return out[0]


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header of a basic-auth credential."""
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def http_get(
    host: Any,
    url: str,
    unit: str,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    request_timeout: float = 5,
    body: str | None = None,
) -> tuple[int, str]:
    """GET `url` (POST `body` when given) from inside the host with python3 (present on every host);
    retries until `timeout` while the connection fails."""
    script = (
        "import json,sys,urllib.request,urllib.error\n"
        "req=urllib.request.Request(sys.argv[1],headers=json.loads(sys.argv[2]),data=sys.argv[4].encode() or None)\n"
        "try:\n r=urllib.request.urlopen(req,timeout=float(sys.argv[3])); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n"
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = host.run(
            "python3 -c %s %s %s %s %s", script, url, json.dumps(headers or {}), str(request_timeout), body or ""
        )
        if out.rc == 0:
            status, _, body = out.stdout.partition("\n")
            return int(status), body
        last = out.stderr
        time.sleep(1)
    fail_with_journal(host, unit, f"GET {url} failed for {timeout} s: {last}")
    raise AssertionError("unreachable")
