"""The perses role: the server runs under its own user on the private address, asks every request
for a credential, lets the generated admin in (and no one with a wrong password), lists every built
dashboard, and answers a Prometheus query through its datasource proxy."""

import json
import os
from pathlib import Path

import pytest
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    http_get,
    journal_on_failure,
    private_address,
)

# The artifacts folder the scenario installed from (molecule/shared/group_vars/all/molecule.yml).
BUILT = [
    json.loads(p.read_text())
    for p in sorted((Path(os.environ["SCALEMART_ARTIFACTS"]) / "dashboards/perses").glob("*.json"))
]
DASHBOARDS = sorted(r["metadata"]["name"] for r in BUILT if r["kind"] == "Dashboard")
PROJECT = next(r["metadata"]["name"] for r in BUILT if r["kind"] == "Project")
DATASOURCE = next(r["metadata"]["name"] for r in BUILT if r["kind"] == "GlobalDatasource")
PASSWORD = "molecule-perses-password-0123"  # noqa: S105 - throwaway test container
UNIT = "perses"


def base(host):
    return f"http://{private_address(host)}:8080"


def login(host, password=PASSWORD):
    body = json.dumps({"login": "admin", "password": password})
    return http_get(
        host,
        f"{base(host)}/api/auth/providers/native/login",
        UNIT,
        headers={"Content-Type": "application/json"},
        body=body,
    )


def token(host):
    status, body = login(host)
    with journal_on_failure(host, UNIT):
        assert status == 200, body
    return {"Authorization": f"Bearer {json.loads(body)['access_token']}"}


def test_perses_is_active_and_enabled(host):
    assert_active(host, UNIT)
    assert_enabled(host, UNIT)


def test_perses_runs_as_its_own_system_user(host):
    user = host.user("perses")
    assert user.exists and user.uid < 1000 and user.shell == "/usr/sbin/nologin"
    pids = host.run("systemctl show -p MainPID --value perses").stdout.strip()
    owner = host.run(f"ps -o user= -p {pids}").stdout.strip()
    assert owner == "perses", f"perses runs as {owner!r}"


def test_perses_listens_on_the_private_address_only(host):
    assert_listening(host, UNIT, f"tcp://{private_address(host)}:8080")
    for other in ("0.0.0.0", "127.0.0.1"):  # noqa: S104 - asserting it is NOT bound there
        assert not host.socket(f"tcp://{other}:8080").is_listening, f"perses also listens on {other}:8080"


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        ("/etc/perses/config.yaml", 0o640),
        ("/etc/perses/provisioning/user-admin.json", 0o640),
    ],
)
def test_secret_bearing_files_are_readable_by_the_service_group_only(host, path, mode):
    assert_file(host, path, "root", "perses", mode)


def test_the_database_is_in_the_data_dir(host):
    assert_file(host, "/var/lib/perses", "perses", "perses", 0o750)
    out = host.run("find /var/lib/perses -name '*.json' -path '*dashboards*'")
    assert out.stdout.split(), f"no dashboard stored under /var/lib/perses: {out.stdout}{out.stderr}"


def test_anonymous_requests_get_401(host):
    for path in (
        f"/api/v1/projects/{PROJECT}/dashboards",
        "/api/v1/users",
        f"/proxy/globaldatasources/{DATASOURCE}/api/v1/query?query=up",
    ):
        status, body = http_get(host, f"{base(host)}{path}", UNIT)
        with journal_on_failure(host, UNIT):
            assert status == 401, f"anonymous GET {path}: {status} {body[:200]}"


def test_sign_up_is_disabled(host):
    body = json.dumps(
        {
            "kind": "User",
            "metadata": {"name": "intruder"},
            "spec": {"nativeProvider": {"password": "intruder-password-123"}},
        }
    )
    status, answer = http_get(
        host, f"{base(host)}/api/v1/users", UNIT, headers={"Content-Type": "application/json"}, body=body
    )
    assert status in (401, 404, 405), f"anonymous sign-up answered {status}: {answer[:200]}"


def test_the_generated_password_logs_in_and_a_wrong_one_is_refused(host):
    status, body = login(host)
    with journal_on_failure(host, UNIT):
        assert status == 200 and json.loads(body)["access_token"], body[:200]
    status, body = login(host, "admin")
    assert status in (400, 401), f"a wrong password answered {status}: {body[:200]}"


def test_every_built_dashboard_is_listed(host):
    status, body = http_get(host, f"{base(host)}/api/v1/projects/{PROJECT}/dashboards", UNIT, headers=token(host))
    with journal_on_failure(host, UNIT):
        assert status == 200, body[:300]
        assert sorted(d["metadata"]["name"] for d in json.loads(body)) == DASHBOARDS


def test_the_datasource_proxy_answers_a_query(host):
    url = f"{base(host)}/proxy/globaldatasources/{DATASOURCE}/api/v1/query?query=up"
    status, body = http_get(host, url, UNIT, headers=token(host))
    with journal_on_failure(host, UNIT):
        assert status == 200, body[:300]
        answer = json.loads(body)
        assert answer["status"] == "success" and answer["data"]["result"], answer
