"""The loadbalancer role: nginx proxies to a stub upstream, routes around a dead one, serves stub_status,
turns a burst away with 429 and a denied network with 403 (converge.yml: 2/s, burst 10, 127.0.0.64/26 denied,
127.0.0.9 the monitoring host), and answers the app's /metrics with 404 itself."""

from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    http_get,
    journal_on_failure,
    private_address,
)

# GETs from one source address on one keep-alive connection; prints the statuses.
_FROM = (
    "import http.client,sys\n"
    "c=http.client.HTTPConnection('127.0.0.1',80,timeout=5,source_address=(sys.argv[1],0))\n"
    "out=[]\n"
    "for _ in range(int(sys.argv[2])):\n c.request('GET','/'); r=c.getresponse(); r.read(); out.append(r.status)\n"
    "print(*out)\n"
)


def statuses(host, source: str, count: int) -> list[int]:
    out = host.run("python3 -c %s %s %s", _FROM, source, str(count))
    assert out.rc == 0, out.stderr
    return [int(code) for code in out.stdout.split()]


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


def test_a_burst_past_the_limit_gets_429(host):
    codes = statuses(host, "127.0.0.4", 30)
    with journal_on_failure(host, "nginx"):
        assert codes[:11] == [200] * 11 and 429 in codes, codes


def test_the_monitoring_host_is_never_rate_limited(host):
    codes = statuses(host, "127.0.0.9", 30)
    with journal_on_failure(host, "nginx"):
        assert codes == [200] * 30, codes


def test_a_denied_address_gets_403_and_its_neighbour_200(host):
    with journal_on_failure(host, "nginx"):
        assert statuses(host, "127.0.0.66", 1) == [403]
        assert statuses(host, "127.0.0.130", 1) == [200]


def test_the_apps_metrics_are_404_from_the_balancer_itself(host):
    # The stub upstream is a static server whose 404 is HTML: a JSON not_found is the balancer's own answer.
    for path in ("/metrics", "/metrics/", "/metrics/x"):
        status, body = http_get(host, f"http://127.0.0.1{path}", "nginx")
        with journal_on_failure(host, "nginx"):
            assert status == 404 and '"error": "not_found"' in body, (path, status, body)


def test_a_bad_deny_entry_left_the_installed_config_in_place(host):
    # side_effect.yml tried loadbalancer_deny_cidrs with 10.0.0.300/32; the preflight stopped it.
    content = host.file("/etc/nginx/nginx.conf").content_string
    assert "10.0.0.300" not in content and "deny 127.0.0.64/26;" in content
