"""The redis role: auth, bind addresses, persistence and memory policy on a real redis-server."""

import pytest
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    journal_on_failure,
    private_address,
)

UNIT = "redis-server"

PASSWORD = "molecule-redis-password-0123"  # noqa: S105 - throwaway test container


def cli(host, *args, address="127.0.0.1"):
    return host.run(
        "redis-cli -h %s -p 6379 -a %s --no-auth-warning " + " ".join(["%s"] * len(args)), address, PASSWORD, *args
    )


def test_redis_is_active(host):
    assert_active(host, UNIT)


def test_redis_is_enabled(host):
    assert_enabled(host, UNIT)


@pytest.mark.parametrize("which", ["loopback", "private"])
def test_redis_listens_on_loopback_and_private_address(host, which):
    address = "127.0.0.1" if which == "loopback" else private_address(host)
    assert_listening(host, UNIT, f"tcp://{address}:6379")


def test_config_is_readable_only_by_redis(host):
    assert_file(host, "/etc/redis/redis.conf", "redis", "redis", 0o640)


def test_ping_with_password_answers_pong_on_private_address(host):
    out = cli(host, "PING", address=private_address(host))
    with journal_on_failure(host, UNIT):
        assert out.stdout.strip() == "PONG", out.stdout + out.stderr


def test_commands_without_password_are_refused(host):
    out = host.run("redis-cli -h 127.0.0.1 -p 6379 PING")
    with journal_on_failure(host, UNIT):
        assert "NOAUTH" in out.stdout + out.stderr


def test_aof_fsync_policy_comes_from_the_variable(host):
    with journal_on_failure(host, UNIT):
        assert cli(host, "CONFIG", "GET", "appendfsync").stdout.split() == ["appendfsync", "everysec"]
        assert cli(host, "CONFIG", "GET", "appendonly").stdout.split() == ["appendonly", "yes"]


def test_memory_limit_and_policy(host):
    with journal_on_failure(host, UNIT):
        assert cli(host, "CONFIG", "GET", "maxmemory").stdout.split() == ["maxmemory", str(64 * 1024 * 1024)]
        assert cli(host, "CONFIG", "GET", "maxmemory-policy").stdout.split() == ["maxmemory-policy", "noeviction"]


def test_writes_survive_a_restart(host):
    with journal_on_failure(host, UNIT):
        assert cli(host, "SET", "molecule:stock", "42").stdout.strip() == "OK"
    host.run("systemctl restart redis-server")
    assert_listening(host, UNIT, "tcp://127.0.0.1:6379")
    out = cli(host, "GET", "molecule:stock")
    with journal_on_failure(host, UNIT):
        assert out.stdout.strip() == "42", out.stdout + out.stderr
