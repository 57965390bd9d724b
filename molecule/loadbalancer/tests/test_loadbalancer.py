"""The loadbalancer role: nginx proxies to a stub upstream, routes around a dead one, serves stub_status."""

from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    http_get,
    journal_on_failure,
    private_address,
)


def test_nginx_is_active(host):
    assert_active(host, "nginx")


def test_nginx_is_enabled(host):
    assert_enabled(host, "nginx")


def test_nginx_listens_on_the_shop_port(host):
    assert_listening(host, "nginx", "tcp://0.0.0.0:80")


def test_stub_status_listens_on_the_private_address_only(host):
    assert_listening(host, "nginx", f"tcp://{private_address(host)}:8081")
    assert not host.socket("tcp://0.0.0.0:8081").is_listening


def test_config_file_is_root_owned(host):
    assert_file(host, "/etc/nginx/nginx.conf", "root", "root", 0o644)


def test_proxies_to_the_stub_upstream_despite_a_dead_one(host):
    # One of the two upstreams refuses connections; nginx must retry the live one every time.
    for _ in range(6):
        status, body = http_get(host, "http://127.0.0.1/", "nginx")
        with journal_on_failure(host, "nginx"):
            assert (status, body.strip()) == (200, "stub upstream")


def test_stub_status_counts_requests(host):
    status, body = http_get(host, f"http://{private_address(host)}:8081/stub_status", "nginx")
    with journal_on_failure(host, "nginx"):
        assert status == 200, body
        assert body.startswith("Active connections:"), body


def test_broken_config_left_the_installed_one_in_place(host):
    # side_effect.yml tried to install an upstream named "bad host name".
    assert "bad host name" not in host.file("/etc/nginx/nginx.conf").content_string
    assert host.run("nginx -t").rc == 0
