"""The common role: packages, time zone, service user, CA bundle, journald limits."""

import os
from pathlib import Path

from scalemart_testinfra import assert_active, assert_enabled, assert_file

# prepare.yml made this certificate on the control machine; converge passed it in common_ca_certificates.
TEST_CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "test-ca.pem")


def test_base_packages_are_installed(host):
    for name in ("ca-certificates", "tzdata", "curl", "cron"):
        assert host.package(name).is_installed, name


def test_time_zone_is_set(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Berlin"
    assert host.run("date +%Z").stdout.strip() in ("CET", "CEST")


def test_service_user_cannot_log_in(host):
    user = host.user("scalemart")
    assert user.exists
    assert user.group == "scalemart"
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "service accounts are system users"


def test_extra_ca_certificate_is_in_the_system_bundle(host):
    pem = TEST_CA.read_text().strip()
    assert pem.startswith("-----BEGIN CERTIFICATE-----"), f"{TEST_CA} is not a PEM certificate"
    assert pem in host.file("/etc/ssl/certs/ca-certificates.crt").content_string


def test_extra_ca_certificate_is_trusted_by_openssl(host):
    # The hash links in /etc/ssl/certs are what OpenSSL's default verify path reads.
    out = host.run("openssl verify /usr/local/share/ca-certificates/scalemart-0.crt")
    assert out.rc == 0, out.stdout + out.stderr


def test_journald_limits_are_configured(host):
    path = "/etc/systemd/journald.conf.d/scalemart.conf"
    assert_file(host, path, "root", "root", 0o644)
    assert "SystemMaxUse=200M" in host.file(path).content_string


def test_journald_is_running(host):
    assert_active(host, "systemd-journald")


def test_cron_is_active_and_enabled(host):
    assert_active(host, "cron")
    assert_enabled(host, "cron")
