"""The release role alone: the bundle in its own virtualenv, the settings file from its inputs, old releases pruned."""

ENV_FILE = "/etc/scalemart/scalemart.env"
CHECK_SETTINGS = (
    "import sys; from scalemart.settings import load_settings; print(load_settings(sys.argv[1]).environment)"
)


def settings(host):
    return host.file(ENV_FILE).content_string


def test_current_points_at_a_release_virtualenv(host):
    link = host.file("/opt/scalemart/current")
    assert link.is_symlink
    assert link.linked_to.startswith("/opt/scalemart/releases/1.0.0-") and link.linked_to.endswith("/venv")


def test_scalemart_is_installed_from_the_bundle(host):
    out = host.run("/opt/scalemart/current/bin/pip show scalemart")
    assert out.rc == 0 and "Version: 1.0.0" in out.stdout, out.stdout + out.stderr


def test_settings_file_with_secrets_is_root_only(host):
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)


def test_settings_come_from_the_release_inputs(host):
    text = settings(host)
    assert "SCALEMART_ENVIRONMENT=test\n" in text
    assert "@10.9.8.7:6379/0\n" in text
    assert "SCALEMART_MONGO_DB=molecule\n" in text


def test_the_release_accepts_its_settings_file(host):
    out = host.run("/opt/scalemart/current/bin/python -c %s %s", CHECK_SETTINGS, ENV_FILE)
    assert out.rc == 0 and out.stdout.strip() == "test", out.stdout + out.stderr


def test_the_scalemart_command_runs_the_current_release_with_its_settings(host):
    f = host.file("/usr/local/bin/scalemart")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o755)
    assert "exec /opt/scalemart/current/bin/scalemart --env-file /etc/scalemart/scalemart.env" in f.content_string
    out = host.run("scalemart --help")
    assert out.rc == 0 and "reconcile" in out.stdout, out.stdout + out.stderr


def test_only_the_newest_releases_are_kept(host):
    # prepare.yml left three older releases; release_keep_releases is 2: the current one and the newest old one.
    kept = sorted(host.run("ls /opt/scalemart/releases").stdout.split())
    assert len(kept) == 2 and "0.9.0-old-3" in kept, kept
    assert any(name.startswith("1.0.0-") for name in kept), kept


def test_side_effect_settings_landed(host):
    # side_effect.yml applied the role with release_log_level debug.
    assert "SCALEMART_LOG_LEVEL=debug\n" in settings(host)


def test_a_bundle_for_another_python_left_the_release_in_place(host):
    # side_effect.yml offered a bundle for Python 3.9.0: nothing of it was installed.
    assert not host.file("/opt/scalemart/releases/9.9.9-other").exists
    assert host.file("/opt/scalemart/current").linked_to.startswith("/opt/scalemart/releases/1.0.0-")
