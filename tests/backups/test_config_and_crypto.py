"""The environment's config travels encrypted; bad config is refused with the field's name."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from backups import config, crypto
from tests.backups import shop
from tests.backups.conftest import ROOT, Host


def test_the_archive_holds_the_config_encrypted_and_never_a_secret_in_clear(host: Host, tmp_path: Path) -> None:
    shop.seed(host.redis.client(), host.db(), products=2, orders=20, queued=1)
    assert host.run("backup").returncode == 0
    [archive] = host.archives()
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert set(members) == {"manifest.json", "mongodb.archive", "redis/dump.rdb", "config.tar.enc"}
    everything = b"".join(members.values())
    secrets_in_play = [
        host.redis.password,
        host.ferret.password,
        Path(host.config["encryption_key_file"]).read_text().strip(),
    ]
    for secret in secrets_in_play:
        assert secret.encode() not in everything
    assert members["config.tar.enc"].startswith(crypto.MAGIC)
    manifest = json.loads(members["manifest.json"])
    assert manifest["environment"] == "dev"
    assert manifest["config"]["encryption"].startswith("fernet") and manifest["tools"]["cryptography"]
    assert {f["path"] for f in manifest["config"]["files"]} >= {str(host.redis.conf)}
    assert manifest["tools"]["mongodump"].startswith("mongodump version")
    assert manifest["counts"]["orders_total"] == 20 and manifest["counts"]["orders_exact"] is True

    out = tmp_path / "config-out"
    proc = host.run("decrypt-config", archive.name, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    restored = out / str(host.redis.conf).lstrip("/")
    assert restored.read_text() == host.redis.conf.read_text()
    assert oct(restored.stat().st_mode & 0o777) == "0o600"
    assert not (out / host.config["encryption_key_file"].lstrip("/")).exists(), "the key must not travel with it"


def test_decrypt_config_with_the_wrong_key_is_refused(host: Host, tmp_path: Path) -> None:
    shop.seed(host.redis.client(), host.db(), products=1, orders=5, queued=0)
    assert host.run("backup").returncode == 0
    Path(host.config["encryption_key_file"]).write_text("another-key-entirely-0123456789")
    proc = host.run("decrypt-config", host.archives()[0].name, "--out", str(tmp_path / "x"))
    assert proc.returncode == 3
    assert "wrong encryption key" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_encryption_round_trip_and_tamper_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few hundred decryptions below: the format is under test here, not the cost of the derivation.
    monkeypatch.setattr(crypto, "ITERATIONS", 1000)
    key = os.urandom(32)
    plain = b"requirepass s3cr3t\n" * 5
    blob = crypto.encrypt(plain, key)
    assert plain not in blob and b"s3cr3t" not in blob and crypto.decrypt(blob, key) == plain
    assert crypto.encrypt(plain, key) != blob, "a fresh salt and IV every time"
    salt_end = len(crypto.MAGIC) + crypto.SALT_LEN
    # Every byte counts: one flipped bit anywhere (magic, salt, the token's version, time, IV, body, HMAC).
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            with pytest.raises(crypto.DecryptionError):
                crypto.decrypt(bytes(bad), key)
    with pytest.raises(crypto.DecryptionError, match="wrong encryption key.*encryption_key_file"):
        crypto.decrypt(blob, os.urandom(32))
    with pytest.raises(crypto.DecryptionError, match="bad header"):
        crypto.decrypt(blob[:salt_end], key)
    assert crypto.decrypt(crypto.encrypt(b"", key), key) == b""


def test_the_config_part_is_a_fernet_token_under_a_key_derived_with_its_own_salt() -> None:
    key = b"k" * 48
    blob = crypto.encrypt(b"x", key)
    assert blob.startswith(b"SMBKENC2")
    salt_end = len(crypto.MAGIC) + crypto.SALT_LEN
    salt, token = blob[len(crypto.MAGIC) : salt_end], base64.urlsafe_b64encode(blob[salt_end:])
    fernet_key = base64.urlsafe_b64encode(
        PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=crypto.ITERATIONS).derive(key)
    )
    assert Fernet(fernet_key).decrypt(token) == b"x"
    assert crypto.ITERATIONS >= 600_000


def test_a_short_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match=r"encryption_key_file\) is 8 bytes"):
        crypto.encrypt(b"x", b"short-ky")


def test_an_archive_of_the_old_scheme_is_refused_by_name() -> None:
    with pytest.raises(crypto.DecryptionError, match="SMBKENC1"):
        crypto.decrypt(b"SMBKENC1" + os.urandom(100), b"k" * 48)


BASE = {"environment": "dev", "encryption_key_file": "/etc/scalemart/backups.key"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"environment": "Prod!"}, "environment"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": "30"}, "retention_days"),
        ({"redis": {"port": 70000}}, "redis.port"),
        ({"redis": {"passwd": "x"}}, "redis.passwd"),
        ({"mongodb": {"uri": "http://x"}}, "mongodb.uri"),
        ({"mongodb": {"username": "scalemart"}}, "mongodb.username/mongodb.password"),
        ({"hooks": {"stop": ["systemctl stop scalemart-app"]}}, "hooks.stop[0]"),
        ({"offsite_command": "aws s3 cp {archive} s3://b/"}, "offsite_command"),
        ({"retension_days": 30}, "retension_days"),
    ],
)
def test_a_bad_config_value_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse({**BASE, **change})
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_a_missing_required_key_names_it() -> None:
    with pytest.raises(config.ConfigError, match="^encryption_key_file: missing"):
        config.parse({"environment": "dev"})


def test_a_config_with_passwords_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backups.json"
    path.write_text(json.dumps({**BASE, "redis": {"password": "x" * 20}}))
    path.chmod(0o644)
    with pytest.raises(config.ConfigError, match="chmod 600"):
        config.load(path)
    path.chmod(0o600)
    assert config.load(path).redis.password == "x" * 20


def test_the_cli_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "backups.json"
    path.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "backups", "--config", str(path), "list"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "is not valid JSON (line 1" in proc.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retention_days": "30"}, "retention_days: expected float, got str '30'"),
        ({"redis": {"port": True}}, "redis.port: expected int, got bool True"),
        ({"textfile_path": 5}, "textfile_path: expected str/NoneType, got int 5"),
        (
            {"hooks": {"start": [["systemctl", "start", "x"], "scalemart-app"]}},
            'hooks.start[1]: expected a command as a list of strings, e.g. ["systemctl", "stop", "scalemart-app"]',
        ),
        (
            {"layout": {"stock": "stock"}},
            "layout.stock: unknown key; known keys are order_product_field, "
            "order_quantity_field, orders_collection, orders_stream, product_key_prefix, stock_field",
        ),
        ({"backup_dir": ""}, "backup_dir: must not be empty (the default is /var/backups/scalemart)"),
    ],
)
def test_a_bad_value_names_the_field_what_was_expected_and_what_came(change: dict[str, object], message: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse({**BASE, **change})
    assert str(err.value) == message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_defaults_fill_what_the_file_leaves_out_and_an_empty_textfile_path_means_none() -> None:
    cfg = config.parse({**BASE, "retention_days": 7, "textfile_path": "", "redis": {"port": 6380}})
    assert cfg.retention_days == 7.0 and isinstance(cfg.retention_days, float)
    assert cfg.textfile_path is None
    assert (cfg.redis.host, cfg.redis.port) == ("127.0.0.1", 6380)
    assert cfg.backup_dir == Path("/var/backups/scalemart")
    assert cfg.encryption_key_file == Path(BASE["encryption_key_file"])
    assert cfg.hooks.stop == [] and cfg.layout == config.Layout()
    with pytest.raises(ValueError, match="frozen"):
        cfg.redis.port = 1  # type: ignore[misc]
