"""The worker role: the queue consumer under systemd moves a queued order into MongoDB and exposes its metrics."""

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

REDIS_PASSWORD = "molecule-redis-password-0123"  # noqa: S105 - throwaway container
UNIT = "scalemart-worker"

# Reads the order back with the release's own pymongo and the installed settings file.
_FIND_ORDER = (
    "import sys\n"
    "from pymongo import MongoClient\n"
    "from scalemart.settings import load_settings\n"
    "s=load_settings('/etc/scalemart/scalemart.env')\n"
    "doc=MongoClient(s.mongo_url,serverSelectionTimeoutMS=5000)[s.mongo_db].orders.find_one({'_id':sys.argv[1]})\n"
    "print(doc['quantity'] if doc else 'missing')\n"
)


def metrics(host):
    status, body = http_get(host, f"http://{private_address(host)}:9101/metrics", UNIT)
    with journal_on_failure(host, UNIT):
        assert status == 200, body
    return body


def sample(body, name):
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the worker's metrics")


def test_worker_is_active(host):
    assert_active(host, UNIT)


def test_worker_is_enabled(host):
    assert_enabled(host, UNIT)


def test_metrics_listen_on_the_private_address_only(host):
    assert_listening(host, UNIT, f"tcp://{private_address(host)}:9101")
    assert not host.socket("tcp://0.0.0.0:9101").is_listening


def test_unit_file_is_root_owned(host):
    assert_file(host, "/etc/systemd/system/scalemart-worker.service", "root", "root", 0o644)


def test_settings_file_with_secrets_is_root_only(host):
    assert_file(host, "/etc/scalemart/scalemart.env", "root", "root", 0o600)


def test_worker_runs_as_the_service_user(host):
    pid = host.run("systemctl show -p MainPID --value scalemart-worker").stdout.strip()
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "scalemart"


def test_heartbeat_is_recent(host):
    with journal_on_failure(host, UNIT):
        heartbeat = sample(metrics(host), "scalemart_worker_heartbeat_timestamp_seconds")
        now = float(host.run("date +%s").stdout)
        assert now - heartbeat < 30, f"last heartbeat {now - heartbeat:.0f} s ago"


def test_a_queued_order_is_persisted_to_mongodb(host):
    order_id = f"molecule-order-{time.time_ns()}"
    now_ms = str(int(time.time() * 1000))
    fields = [
        "order_id",
        order_id,
        "user_id",
        "u1",
        "product_id",
        "molecule-mug",
        "quantity",
        "2",
        "unit_price_cents",
        "950",
        "total_cents",
        "1900",
        "created_at_ms",
        now_ms,
        "idempotency_key",
        order_id,
    ]
    command = "redis-cli -h 127.0.0.1 -a %s --no-auth-warning XADD sm:orders '*' " + " ".join(["%s"] * len(fields))
    out = host.run(command, REDIS_PASSWORD, *fields)
    with journal_on_failure(host, "redis-server"):
        assert out.rc == 0 and "-" in out.stdout, out.stdout + out.stderr
    deadline = time.monotonic() + 30
    found = ""
    while time.monotonic() < deadline:
        found = host.run("/opt/scalemart/current/bin/python -c %s %s", _FIND_ORDER, order_id).stdout.strip()
        if found == "2":
            break
        time.sleep(1)
    if found != "2":
        fail_with_journal(host, UNIT, f"order {order_id} was not persisted within 30 s (got {found!r})")
    with journal_on_failure(host, UNIT):
        assert sample(metrics(host), "scalemart_worker_orders_persisted_total") >= 1
        assert sample(metrics(host), "scalemart_queue_length") == 0
