"""The app role: the API from the control machine's wheelhouse, under systemd, answering real requests."""

import json
import time

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

TOKEN = "molecule-admin-token-0123456789abcdef"  # noqa: S105 - throwaway container
UNIT = "scalemart-app"

_REQUEST = (
    "import json,sys,urllib.request,urllib.error\n"
    "body=sys.argv[3].encode() if sys.argv[3] else None\n"
    "req=urllib.request.Request(sys.argv[2],data=body,method=sys.argv[1],headers=json.loads(sys.argv[4]))\n"
    "try:\n r=urllib.request.urlopen(req,timeout=10); print(r.status); print(r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n"
)


def request(host, method, path, body=None, token=TOKEN):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://{private_address(host)}:8000{path}"
    out = host.run(
        "python3 -c %s %s %s %s %s", _REQUEST, method, url, json.dumps(body) if body else "", json.dumps(headers)
    )
    if out.rc != 0:
        fail_with_journal(host, UNIT, f"{method} {url} failed: {out.stderr}")
    status, _, text = out.stdout.partition("\n")
    return int(status), text


def test_api_is_active(host):
    assert_active(host, UNIT)


def test_api_is_enabled(host):
    assert_enabled(host, UNIT)


def test_api_listens_on_the_private_address_only(host):
    assert_listening(host, UNIT, f"tcp://{private_address(host)}:8000")
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_settings_file_with_secrets_is_root_only(host):
    assert_file(host, "/etc/scalemart/scalemart.env", "root", "root", 0o600)


def test_unit_file_is_root_owned(host):
    assert_file(host, "/etc/systemd/system/scalemart-app.service", "root", "root", 0o644)


def test_api_runs_as_the_service_user_with_the_configured_workers(host):
    pid = host.run("systemctl show -p MainPID --value scalemart-app").stdout.strip()
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "scalemart"
    # uvicorn's supervisor plus app_workers processes
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = host.run(f"pgrep -P {pid} -f scalemart").stdout.split()
        if len(children) >= 2:
            break
        time.sleep(1)
    assert len(children) >= 2, f"expected 2 worker processes under {pid}, found {children}"


def test_installed_from_the_wheelhouse_into_a_release_virtualenv(host):
    link = host.file("/opt/scalemart/current")
    assert link.is_symlink
    assert link.linked_to.startswith("/opt/scalemart/releases/")
    out = host.run("/opt/scalemart/current/bin/pip show scalemart")
    assert out.rc == 0 and "Version: 1.0.0" in out.stdout, out.stdout + out.stderr


def test_ready_reports_redis_and_mongodb_ok(host):
    status, body = http_get(host, f"http://{private_address(host)}:8000/health/ready", UNIT)
    with journal_on_failure(host, UNIT):
        assert status == 200, body
        assert json.loads(body)["checks"]["redis"] == "ok"
        assert json.loads(body)["checks"]["mongodb"] == "ok"


def test_admin_api_refuses_a_wrong_token(host):
    status, body = request(host, "GET", "/api/admin/stats", token="not-the-token-0123456789")  # noqa: S106
    with journal_on_failure(host, UNIT):
        assert status == 401, body


def test_buy_takes_stock_atomically(host):
    pid = f"molecule-{int(time.time())}"
    with journal_on_failure(host, UNIT):
        status, body = request(
            host,
            "POST",
            "/api/admin/products",
            {"id": pid, "name": "Molecule mug", "price": 9.5, "stock": 3, "open": True},
        )
        assert status == 201, body
        buy = {"product_id": pid, "quantity": 2, "idempotency_key": f"{pid}-1"}
        status, body = request(host, "POST", "/api/buy", buy, token=None)
        assert status == 401, body  # no buyer token, no purchase
        status, body = request(host, "POST", "/api/admin/tokens", {"user_id": "u1"})
        assert status == 201, body
        status, body = request(host, "POST", "/api/buy", buy, token=json.loads(body)["token"])
        assert status == 201 and json.loads(body)["user_id"] == "u1", body
        status, body = request(host, "GET", f"/api/products/{pid}", token=None)
        assert status == 200 and json.loads(body)["stock_left"] == 1, body


def test_metrics_carry_the_app_info_and_environment(host):
    status, body = http_get(host, f"http://{private_address(host)}:8000/metrics", UNIT)
    with journal_on_failure(host, UNIT):
        assert status == 200, body
        assert 'scalemart_app_info{environment="dev",version="1.0.0"} 1.0' in body


def test_rate_limit_comes_from_the_role_variable(host):
    env = host.file("/etc/scalemart/scalemart.env").content_string
    assert "SCALEMART_RATE_LIMIT_REQUESTS=250\n" in env


def test_refused_settings_left_the_installed_file_in_place(host):
    # side_effect.yml tried to install SCALEMART_CACHE_TTL_SECONDS=-1.
    assert "CACHE_TTL_SECONDS" not in host.file("/etc/scalemart/scalemart.env").content_string
    assert_active(host, UNIT)


def test_rolling_restart_left_the_load_balancer_config_as_the_role_wrote_it(host):
    # side_effect.yml drained this host from nginx, restarted the API and put it back.
    before = host.file("/root/nginx.conf.before-rolling-restart").content_string
    assert host.file("/etc/nginx/nginx.conf").content_string == before
    assert " down;" not in before


def test_load_balancer_serves_the_api_after_the_rolling_restart(host):
    status, body = http_get(host, "http://127.0.0.1/health/ready", "nginx")
    with journal_on_failure(host, "nginx"):
        assert status == 200, body
