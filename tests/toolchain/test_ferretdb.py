"""FerretDB (SQLite backend) answers pymongo and the mongo-tools like MongoDB does."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from tests.toolchain.conftest import tool


def test_pymongo_insert_unique_index_and_read(ferretdb_url: str) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb_url, serverSelectionTimeoutMS=5000)
    orders = client["toolchain_test"]["orders"]
    orders.drop()
    orders.create_index("order_id", unique=True)
    orders.insert_many([{"order_id": f"o{i}", "qty": i} for i in range(10)])
    with pytest.raises(DuplicateKeyError):
        orders.insert_one({"order_id": "o3", "qty": 99})
    assert orders.count_documents({}) == 10
    found = orders.find_one({"order_id": "o7"})
    assert found is not None and found["qty"] == 7
    assert sum(d["qty"] for d in orders.find({"qty": {"$gte": 5}})) == 35


def test_mongodump_and_mongorestore_round_trip(ferretdb_url: str, tmp_path: Path) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb_url, serverSelectionTimeoutMS=5000)
    src = client["dump_src"]["items"]
    src.drop()
    docs = [{"_id": i, "name": f"item-{i}", "tags": ["a", str(i)]} for i in range(50)]
    src.insert_many(docs)
    archive = tmp_path / "dump.archive"
    subprocess.run(
        [tool("mongodump"), f"--uri={ferretdb_url}", "--db=dump_src", "--collection=items", f"--archive={archive}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert archive.stat().st_size > 0
    client["dump_dst"]["items"].drop()
    subprocess.run(
        [
            tool("mongorestore"),
            f"--uri={ferretdb_url}",
            f"--archive={archive}",
            "--nsFrom=dump_src.*",
            "--nsTo=dump_dst.*",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    restored = list(client["dump_dst"]["items"].find().sort("_id", 1))
    assert restored == docs
