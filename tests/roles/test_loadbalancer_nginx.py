"""The loadbalancer role's nginx.conf through a real nginx on loopback: rate limit, deny list, monitoring exempt,
the app's /metrics never proxied.

The role's own template is rendered by ansible (its defaults and vars, its filter plugin) with a small rate,
a deny list and a monitoring address; only the paths and the listen address are moved to a temp folder and
127.0.0.1. Clients bind addresses of their own in 127/8 (Linux routes all of it to lo), so nginx sees each as
a different client, as it sees shoppers. mtail runs the exporters role's program over the access log.
"""

from __future__ import annotations

import getpass
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import yaml

from tests.net import free_port, wait_port
from tests.roles.conftest import ROOT, tail, tool_env

ROLE = ROOT / "roles" / "loadbalancer"
RATE, BURST = 5, 10
MONITOR = "127.0.0.9"
DENIED = "127.0.0.66"  # inside the deny entry below
# Host bits set on purpose: the role writes 127.0.0.64/26.
DENY_ENTRY = "127.0.0.70/26"
OUTSIDE = "127.0.0.130"  # just past that network


class _Upstream(BaseHTTPRequestHandler):
    """The app's stand-in: 200 and the path for everything; every path it was asked for in `seen`."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []
    # Headers and body go out as two writes: without this, Nagle holds the body for nginx's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Balancer:
    url: str
    config: str
    off_config: Path
    mtail: str
    work: Path


def _render(work: Path, upstream: int, listen: int, status: int) -> tuple[Path, Path]:
    """The role's template twice, by ansible: limited (with deny list) and with the limit off."""
    common = {
        "loadbalancer_upstream_hosts": ["127.0.0.1"],
        "loadbalancer_upstream_port": upstream,
        "loadbalancer_listen_port": listen,
        "loadbalancer_stub_status_address": "127.0.0.1",
        "loadbalancer_stub_status_port": status,
        "loadbalancer_worker_connections": 256,
        "_loadbalancer_nofile": 1024,
    }
    limited = {
        **common,
        "loadbalancer_rate_limit_per_second": RATE,
        "loadbalancer_rate_limit_burst": BURST,
        "loadbalancer_monitoring_addresses": [MONITOR],
        "loadbalancer_deny_cidrs": [DENY_ENTRY],
    }
    off = {**common, "loadbalancer_rate_limit_per_second": 0}
    template = str(ROLE / "templates" / "nginx.conf.j2")
    play = [
        {
            "name": "Render the loadbalancer role's nginx.conf",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "tasks": [
                {
                    "name": f"Render {name}.",
                    "ansible.builtin.template": {"src": template, "dest": str(work / f"{name}.conf")},
                    "vars": variables,
                }
                for name, variables in (("limited", limited), ("off", off))
            ],
        }
    ]
    (work / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {**tool_env(), "ANSIBLE_FILTER_PLUGINS": str(ROLE / "filter_plugins")}
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(work / "render.yml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"rendering the template failed:\n{tail(proc.stdout + proc.stderr, 60)}"
    return work / "limited.conf", work / "off.conf"


def _on_loopback(conf: Path, work: Path) -> str:
    """The rendered file with its paths in `work` and the shop on 127.0.0.1; nothing else changed."""
    text = conf.read_text()
    temp = "".join(
        f"    {kind}_temp_path {work / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for pattern, replacement in (
        (r"(?m)^user \S+;", f"user {getpass.getuser()};"),
        (r"(?m)^pid \S+;", f"pid {work / 'nginx.pid'};"),
        (r"/var/log/nginx/", f"{work}/"),
        (r"(?m)^(\s*listen )(\d+) default_server;", r"\g<1>127.0.0.1:\g<2> default_server;"),
        (r"(?m)^http \{\n", "http {\n" + temp),
    ):
        text, count = re.subn(pattern, replacement, text)
        assert count == 1 or pattern == "/var/log/nginx/", f"{pattern!r} matched {count} times in {conf.name}"
    return text


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balancer]:
    for tool in ("nginx", "mtail"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make bootstrap` (installs the Debian package {tool})")
    work = tmp_path_factory.mktemp("lb")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / kind).mkdir()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    listen, status, mtail_port = free_port(), free_port(), free_port()
    limited, off = _render(work, upstream.server_address[1], listen, status)
    (work / "nginx.conf").write_text(_on_loopback(limited, work))
    (work / "off-loopback.conf").write_text(_on_loopback(off, work))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log = (work / "nginx.log").open("w")
        procs.append(
            subprocess.Popen(
                ["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_port(listen, procs[-1], work / "nginx.log")
        (work / "progs").mkdir()
        shutil.copy(ROOT / "roles" / "exporters" / "files" / "scalemart_lb.mtail", work / "progs")
        log = (work / "mtail.log").open("w")
        procs.append(
            subprocess.Popen(
                [
                    "mtail",
                    "--progs",
                    str(work / "progs"),
                    "--logs",
                    str(work / "access.log"),
                    "--address",
                    "127.0.0.1",
                    "--port",
                    str(mtail_port),
                    "--emit_prog_label=false",
                    "--logtostderr",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_port(mtail_port, procs[-1], work / "mtail.log")
        yield Balancer(
            f"http://127.0.0.1:{listen}",
            (work / "nginx.conf").read_text(),
            work / "off-loopback.conf",
            f"http://127.0.0.1:{mtail_port}/metrics",
            work,
        )
    finally:
        for proc in reversed(procs):
            _stop(proc)
        upstream.shutdown()


def client(address: str) -> httpx.Client:
    """A client whose connections come from `address` (a loopback address of its own)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def statuses(lb: Balancer, address: str, paths: list[str], pause: float = 0.0) -> list[int]:
    out = []
    with client(address) as c:
        for path in paths:
            out.append(c.get(lb.url + path).status_code)
            time.sleep(pause)
    return out


def counted(lb: Balancer) -> dict[str, float]:
    """scalemart_lb_responses_total by code, as mtail exports it, once mtail has read every answer so far:
    nginx writes its access log once a second (buffer=64k flush=1s), mtail then reads each line."""
    time.sleep(1.2)
    deadline = time.monotonic() + 15
    while True:
        text = httpx.get(lb.mtail, timeout=5).text
        found = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^scalemart_lb_responses_total\{code="(\d+)"\} (\S+)$', text, re.MULTILINE)
        }
        lines = len((lb.work / "access.log").read_text().splitlines())
        if sum(found.values()) == lines or time.monotonic() > deadline:
            assert sum(found.values()) == lines, f"mtail counted {found} of {lines} access log lines"
            return found
        time.sleep(0.25)


def test_a_burst_past_the_limit_gets_429_in_the_apps_error_shape(balancer: Balancer) -> None:
    with client("127.0.0.2") as c:
        answers = [c.get(balancer.url + "/api/products") for _ in range(40)]
    codes = [r.status_code for r in answers]
    # The first request and the burst pass at once; a few more as the bucket drains during the run.
    assert set(codes) == {200, 429} and BURST + 1 <= codes.count(200) <= BURST + 4, codes
    assert codes[: BURST + 1] == [200] * (BURST + 1), codes
    refused = answers[codes.index(429)]
    assert refused.json()["error"] == "rate_limited" and refused.headers["Retry-After"] == "1", refused.text


def test_a_paced_client_beside_the_burst_gets_200(balancer: Balancer) -> None:
    # Right after another address flooded: the limit is per address.
    statuses(balancer, "127.0.0.12", ["/api/products"] * 40)
    assert statuses(balancer, "127.0.0.3", ["/api/products"] * 8, pause=1 / (RATE - 1)) == [200] * 8


def test_health_checks_are_limited_for_clients_but_never_for_the_monitoring_host(balancer: Balancer) -> None:
    # The black-box probes' paths, faster than any probe: the monitoring host's requests carry no key.
    paths = ["/health/ready", "/api/products"] * 30
    assert statuses(balancer, MONITOR, paths) == [200] * len(paths)
    assert 429 in statuses(balancer, "127.0.0.4", ["/health/ready"] * 40)


def test_a_denied_network_gets_403_and_its_neighbour_200(balancer: Balancer) -> None:
    assert "deny 127.0.0.64/26;" in balancer.config, "the deny entry is not written as its network"
    with client(DENIED) as c:
        denied = c.get(balancer.url + "/api/products")
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden", denied.text
    assert statuses(balancer, OUTSIDE, ["/api/products"]) == [200]


def test_a_denied_flood_stays_403_and_takes_no_rate_limit_state(balancer: Balancer) -> None:
    assert statuses(balancer, "127.0.0.67", ["/api/products"] * 30) == [403] * 30


# The app's /metrics as a client may spell it, sent as written (httpx would resolve the dots itself); nginx matches
# the path it decoded and normalised.
METRICS_TARGETS = [
    "/metrics",
    "/metrics/",
    "/metrics?name[]=scalemart_revenue_cents_total",
    "/metrics/anything/below",
    "//metrics",
    "/api/../metrics",
    "/%6detrics",
    "/metrics%2Fx",
]


def raw_get(lb: Balancer, address: str, target: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET of `target` exactly as written, from `address`."""
    host, port = lb.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(address, 0))
    try:
        conn.request("GET", target)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read().decode()
    finally:
        conn.close()


def test_the_apps_metrics_are_404_in_the_apps_error_shape_and_never_proxied(balancer: Balancer) -> None:
    before = len(_Upstream.seen)
    for target in METRICS_TARGETS:
        status, content_type, body = raw_get(balancer, "127.0.0.20", target)
        assert (status, content_type) == (404, "application/json"), (target, status, content_type, body)
        assert json.loads(body)["error"] == "not_found" and json.loads(body)["field"] is None, (target, body)
    assert _Upstream.seen[before:] == [], f"the balancer proxied {_Upstream.seen[before:]}"


def test_paths_beside_the_metrics_are_still_proxied(balancer: Balancer) -> None:
    # Only /metrics and what is under it: a longer name or /metrics deeper in a path is the app's to answer.
    before = len(_Upstream.seen)
    for target in ("/metricsx", "/api/metrics", "/api/products?sort=metrics"):
        status, _, body = raw_get(balancer, "127.0.0.21", target)
        assert status == 200 and json.loads(body)["path"] == target, (target, status, body)
    assert _Upstream.seen[before:] == ["/metricsx", "/api/metrics", "/api/products?sort=metrics"]


def test_mtail_counts_a_probe_of_the_metrics_as_its_addresss_404(balancer: Balancer) -> None:
    # What ScaleMartClientScanning reads: an address asking for paths that are not there.
    assert raw_get(balancer, "127.0.0.22", "/metrics")[0] == 404
    counted(balancer)  # mtail has read every answer
    text = httpx.get(balancer.mtail, timeout=5).text
    found = re.search(r'^scalemart_lb_client_errors_total\{client="127\.0\.0\.22",code="404"\} (\S+)$', text, re.M)
    assert found and float(found.group(1)) == 1, [ln for ln in text.splitlines() if "client_errors" in ln]


def test_mtail_counts_the_429s_and_403s_by_code(balancer: Balancer) -> None:
    before = counted(balancer)
    sent = statuses(balancer, "127.0.0.5", ["/api/products"] * 20) + statuses(balancer, "127.0.0.68", ["/"] * 2)
    want = {code: sent.count(int(code)) for code in ("200", "403", "429")}
    assert want["429"] > 0 and want["403"] == 2, sent
    now = counted(balancer)
    grown = {code: now.get(code, 0) - before.get(code, 0) for code in want}
    assert grown == want, f"mtail counted {grown} of {want}:\n{(balancer.work / 'access.log').read_text()[-2000:]}"


def test_a_rate_of_0_writes_no_limit_and_nginx_accepts_it(balancer: Balancer) -> None:
    text = balancer.off_config.read_text()
    assert "limit_req" not in text and "geo " not in text, text
    proc = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(balancer.work), "-c", str(balancer.off_config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
