"""The exporters role: each exporter runs, listens on the private address and reads its service;
mtail counts nginx's answers; the host limits are the container's own (docker inspect)."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    basic_auth,
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
    # The exporter's own metrics: its probes are checked below.
    "prometheus-blackbox-exporter": (9115, "blackbox_exporter_config_last_reload_successful 1"),
    "mtail": (3903, "scalemart_lb_request_duration_seconds_count"),
}
TEXTFILE = "/var/lib/prometheus/node-exporter/scalemart_host.prom"
ROOT = Path(__file__).resolve().parents[3]
# The exporters whose bookworm build takes a web config ask for the credential; the others have no such setting.
SCENARIO_VARS = yaml.safe_load((ROOT / "molecule/exporters/vars.yml").read_text())
WITH_CREDENTIAL = {"prometheus-node-exporter", "prometheus-mongodb-exporter", "prometheus-blackbox-exporter"}
CREDENTIAL = basic_auth(SCENARIO_VARS["exporters_web_user"], SCENARIO_VARS["exporters_web_password"])


def credential(unit):
    return CREDENTIAL if unit in WITH_CREDENTIAL else {}


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
    status, body = http_get(host, url, unit, credential(unit), timeout=30, request_timeout=25)
    with journal_on_failure(host, unit):
        assert status == 200, body
    name, _, value = sample.partition(" ")
    pattern = rf"^{name}(\{{[^}}]*\}})? {value}$" if value else rf"^{name}\b"
    if not re.search(pattern, body, re.MULTILINE):
        hint = ""
        if unit == "prometheus-mongodb-exporter" and not host.file("/usr/local/bin/mongodb_exporter").exists:
            hint = (
                "\nDebian's prometheus-mongodb-exporter 1.0.0 (2018, mgo driver) cannot connect to FerretDB "
                "(`no reachable servers`, even without auth). Fix: build percona/mongodb_exporter into "
                ".tools/bin/mongodb_exporter (toolchain); the role then installs and runs it instead."
            )
        fail_with_journal(host, unit, f"{unit} metrics lack {sample!r}{hint}")


@pytest.mark.parametrize("unit", sorted(WITH_CREDENTIAL))
def test_exporter_with_a_web_config_asks_for_the_credential(host, unit):
    url = f"http://{private_address(host)}:{EXPORTERS[unit][0]}/metrics"
    wrong = basic_auth(SCENARIO_VARS["exporters_web_user"], "not-the-password-0123")
    with journal_on_failure(host, unit):
        assert http_get(host, url, unit)[0] == 401
        assert http_get(host, url, unit, wrong)[0] == 401
    text = host.file("/etc/prometheus/exporters-web.yml").content_string
    assert SCENARIO_VARS["exporters_web_password"] not in text
    assert_file(host, "/etc/prometheus/exporters-web.yml", "root", "prometheus", 0o640)


def metrics(host, unit, port):
    status, body = http_get(host, f"http://{private_address(host)}:{port}/metrics", unit, credential(unit))
    with journal_on_failure(host, unit):
        assert status == 200, body
    return body


def sample(body, name, labels=""):
    """The value of `name{labels}` (labels as written by the exporter), or None."""
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("tcp_connect", "{address}:6379"),
        ("http_2xx", "http://{address}:8081/stub_status"),
    ],
)
def test_blackbox_probe_succeeds(host, module, target):
    target = target.format(address=private_address(host))
    url = f"http://{private_address(host)}:9115/probe?module={module}&target={target}"
    status, body = http_get(host, url, "prometheus-blackbox-exporter", CREDENTIAL)
    with journal_on_failure(host, "prometheus-blackbox-exporter"):
        assert status == 200, body
        assert sample(body, "probe_success") == 1, body


def test_blackbox_probe_of_a_closed_port_fails(host):
    url = f"http://{private_address(host)}:9115/probe?module=tcp_connect&target={private_address(host)}:1"
    status, body = http_get(host, url, "prometheus-blackbox-exporter", CREDENTIAL)
    with journal_on_failure(host, "prometheus-blackbox-exporter"):
        assert status == 200, body
        assert sample(body, "probe_success") == 0, body


def test_blackbox_config_was_checked_by_the_exporter(host):
    assert host.run("prometheus-blackbox-exporter --config.check --config.file=/etc/prometheus/blackbox.yml").rc == 0


def test_mtail_counts_nginx_answers_by_status(host):
    # The molecule upstream (127.0.0.1:8000) is dead, so nginx answers 502; stub_status is a 200.
    before = metrics(host, "mtail", 3903)
    counts = {code: sample(before, "scalemart_lb_responses_total", f'code="{code}"') or 0 for code in ("200", "502")}
    count = sample(before, "scalemart_lb_request_duration_seconds_count") or 0
    http_get(host, "http://127.0.0.1:80/", "nginx")
    http_get(host, f"http://{private_address(host)}:8081/stub_status", "nginx")
    deadline = time.monotonic() + 20  # nginx flushes its log buffer every second, mtail polls every 250 ms
    while True:
        after = metrics(host, "mtail", 3903)
        got = {code: sample(after, "scalemart_lb_responses_total", f'code="{code}"') or 0 for code in counts}
        if all(got[c] > counts[c] for c in counts) or time.monotonic() > deadline:
            break
        time.sleep(1)
    with journal_on_failure(host, "mtail"):
        assert all(got[c] > counts[c] for c in counts), f"before {counts}, after {got}"
        assert sample(after, "scalemart_lb_request_duration_seconds_count") >= count + 2
        assert sample(after, "scalemart_lb_request_duration_seconds_bucket", 'le="10"') is not None
        ours = [line for line in after.splitlines() if line.startswith("scalemart_lb_")]
        assert not [line for line in ours if "prog=" in line], "a prog label: --emit_prog_label=false is missing"


def _client_errors(body):
    """scalemart_lb_client_errors_total as {(client, code): value}."""
    series = re.finditer(
        r'^scalemart_lb_client_errors_total\{client="([^"]+)",code="(\d+)"\} (\S+)$', body, re.MULTILINE
    )
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in series}


def test_mtail_counts_401_403_404_by_client_address_and_nothing_else(host):
    # stub_status' server answers 404 to any other path; the request comes from the private address itself.
    # The dead upstream's 502 and stub_status' 200 must not create client series.
    client = private_address(host)
    before = _client_errors(metrics(host, "mtail", 3903)).get((client, "404"), 0)
    http_get(host, "http://127.0.0.1:80/", "nginx")
    status, _ = http_get(host, f"http://{client}:8081/.env", "nginx")
    assert status == 404
    deadline = time.monotonic() + 20  # nginx flushes its log buffer every second, mtail polls every 250 ms
    while True:
        found = _client_errors(metrics(host, "mtail", 3903))
        if found.get((client, "404"), 0) > before or time.monotonic() > deadline:
            break
        time.sleep(1)
    with journal_on_failure(host, "mtail"):
        assert found.get((client, "404"), 0) == before + 1, f"before {before}, after {found}"
        assert {code for _, code in found} <= {"401", "403", "404"}, found


def _mtail_check(host, path):
    """The role's own `validate:` command for the mtail program, run on `path`."""
    command = yaml.safe_load((ROOT / "roles/exporters/vars/main.yml").read_text())["_exporters_mtail_check"]
    return host.run(command.replace("%s", path))


def test_mtail_check_accepts_the_installed_program_while_mtail_runs(host):
    result = _mtail_check(host, "/etc/mtail/scalemart_lb.mtail")
    assert result.rc == 0, result.stderr


def test_mtail_check_refuses_a_broken_program_under_any_name(host):
    # Named like Ansible's temporary copy: mtail alone would skip a file not named *.mtail and pass.
    host.run("mkdir -p /root/mtail-check && printf 'counter x\\n/broken {\\n' > /root/mtail-check/source")
    result = _mtail_check(host, "/root/mtail-check/source")
    assert result.rc != 0, f"a broken program passed the role's check: {result.stdout}{result.stderr}"
    assert "compile failed" in result.stderr


def test_host_limits_timer_is_active_and_enabled(host):
    assert_active(host, "scalemart-host-limits.timer")
    assert_enabled(host, "scalemart-host-limits.timer")


def test_host_limits_are_refreshed(host):
    first = host.file(TEXTFILE).mtime
    deadline = time.monotonic() + 40
    while host.file(TEXTFILE).mtime == first and time.monotonic() < deadline:
        time.sleep(2)
    if host.file(TEXTFILE).mtime == first:
        fail_with_journal(host, "scalemart-host-limits.service", f"{TEXTFILE} not rewritten within 40 s")


def _container(host):
    """docker inspect of the scenario's container, from the control machine."""
    name = host.ansible.get_variables()["inventory_hostname"]
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)[0]["HostConfig"]


def test_host_limits_are_the_containers_own(host):
    # side_effect.yml gave the running container a memory limit and a CPU quota (docker update): the
    # molecule platform sets neither, and only a limit the machine does not have shows the cgroup was read.
    config = _container(host)
    assert config["Memory"] > 0 and config["NanoCpus"] > 0, f"side_effect.yml set no limit: {config['Memory']=}"
    body = metrics(host, "prometheus-node-exporter", 9100)
    with journal_on_failure(host, "scalemart-host-limits.service"):
        assert sample(body, "scalemart_host_memory_limit_bytes") == config["Memory"]
        assert sample(body, "scalemart_host_cpu_limit_cores") == config["NanoCpus"] / 1e9
        sources = [sample(body, "scalemart_host_limits_source", f'source="{s}"') for s in ("cgroup-v1", "cgroup-v2")]
        assert 1 in sources, body
        working_set = sample(body, "scalemart_host_memory_working_set_bytes")
        assert 0 < working_set < config["Memory"]
        assert sample(body, "scalemart_host_cpu_usage_seconds_total") > 0
