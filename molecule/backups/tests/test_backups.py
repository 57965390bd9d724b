"""The backups role: the tool, its config and key, and a daily timer that really takes a backup."""

from scalemart_testinfra import assert_active, assert_enabled, assert_file, fail_with_journal, journal_on_failure

UNIT = "scalemart-backup.service"


def test_timer_is_active(host):
    assert_active(host, "scalemart-backup.timer")


def test_timer_is_enabled(host):
    assert_enabled(host, "scalemart-backup.timer")


def test_timer_fires_daily_at_two(host):
    out = host.run("systemctl show scalemart-backup.timer -p TimersCalendar").stdout
    assert "OnCalendar=*-*-* 02:00:00" in out, out


def test_config_and_key_are_root_only(host):
    assert_file(host, "/etc/scalemart/backups.json", "root", "root", 0o600)
    assert_file(host, "/etc/scalemart/backups.key", "root", "root", 0o600)


def test_backup_folder_is_private(host):
    assert_file(host, "/var/backups/scalemart", "root", "root", 0o700)


def test_the_service_takes_a_backup(host):
    run = host.run("systemctl start scalemart-backup.service")
    if run.rc != 0:
        fail_with_journal(host, UNIT, f"the backup service failed: {run.stderr}")
    archives = host.run("ls /var/backups/scalemart").stdout.split()
    with journal_on_failure(host, UNIT):
        assert any(a.startswith("scalemart_backup_molecule_") and a.endswith(".tar.gz") for a in archives), archives


def test_the_backup_is_reported_to_the_node_exporter(host):
    prom = host.file("/var/lib/prometheus/node-exporter/scalemart_backup.prom")
    with journal_on_failure(host, UNIT):
        assert prom.exists, "run test_the_service_takes_a_backup first"
        assert "scalemart_backup_last_success_timestamp_seconds" in prom.content_string
