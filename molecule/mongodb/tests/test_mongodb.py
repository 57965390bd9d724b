"""The mongodb role: FerretDB under systemd, data on the data dir, authentication enforced.

The wire-protocol checks run pymongo from the control machine against the container's
private address, the way the app and backups reach it.
"""

import pymongo
import pytest
from pymongo.errors import OperationFailure, PyMongoError
from scalemart_testinfra import (
    assert_active,
    assert_enabled,
    assert_file,
    assert_listening,
    journal_on_failure,
    private_address,
)

UNIT = "ferretdb"
PASSWORD = "molecule-mongo-password-0123"  # noqa: S105 - throwaway test container


def client(host, user="scalemart", password=PASSWORD):
    auth = f"{user}:{password}@" if user else ""
    return pymongo.MongoClient(
        f"mongodb://{auth}{private_address(host)}:27017/?authSource=admin", serverSelectionTimeoutMS=10000
    )


def test_server_is_active(host):
    assert_active(host, UNIT)


def test_server_is_enabled(host):
    assert_enabled(host, UNIT)


def test_server_listens_on_private_address(host):
    assert_listening(host, UNIT, f"tcp://{private_address(host)}:27017")


def test_environment_file_holds_the_password_and_is_private(host):
    assert_file(host, "/etc/ferretdb/ferretdb.env", "root", "root", 0o600)


def test_authenticated_insert_and_find(host):
    with journal_on_failure(host, UNIT, PyMongoError), client(host) as c:
        c.shop.molecule.insert_one({"sku": "tee", "stock": 3})
        assert c.shop.molecule.find_one({"sku": "tee"})["stock"] == 3


def test_unauthenticated_commands_are_refused(host):
    # Another error than the refusal (e.g. no server) fails with the journal too.
    with (
        journal_on_failure(host, UNIT, PyMongoError),
        client(host, user=None) as c,
        pytest.raises(OperationFailure, match="requires authentication"),
    ):
        c.shop.molecule.find_one()


def test_wrong_password_is_refused(host):
    wrong = client(host, password="wrong-password-000000")  # noqa: S106 - not a credential
    with (
        journal_on_failure(host, UNIT, PyMongoError),
        wrong as c,
        pytest.raises(OperationFailure, match="Authentication"),
    ):
        c.shop.molecule.find_one()


def test_data_lives_in_the_data_dir(host):
    with journal_on_failure(host, UNIT, PyMongoError), client(host) as c:
        c.shop.molecule.insert_one({"sku": "mug"})
    files = host.run("ls /srv/data/mongodb").stdout.split()
    assert any(f.startswith("shop") for f in files), files
