"""MongoDB (FerretDB in this distribution): mongodump/mongorestore of the app database and the
order counts the manifest records. Credentials reach the tools through a 0600 `--config` file,
never the command line (which every user on the host can read in `ps`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pymongo
import pymongo.errors
from bson import json_util

from backups.config import Layout, MongoConfig


class MongoBackupError(Exception):
    pass


def _uri(cfg: MongoConfig) -> str:
    if not cfg.username:
        return cfg.uri
    parts = urlsplit(cfg.uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(cfg.username, safe='')}:{quote(cfg.password, safe='')}@{host}"
    query = parts.query
    if "authSource=" not in query:
        query = f"{query}&authSource={cfg.auth_database}" if query else f"authSource={cfg.auth_database}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", query, parts.fragment))


def client(cfg: MongoConfig) -> pymongo.MongoClient:
    return pymongo.MongoClient(_uri(cfg), serverSelectionTimeoutMS=5000)


def ping(cfg: MongoConfig) -> dict[str, str]:
    try:
        info = client(cfg).admin.command("buildInfo")
    except pymongo.errors.OperationFailure as err:
        raise MongoBackupError(f"mongodb.username/password: the server refused them ({err})") from None
    except pymongo.errors.PyMongoError as err:
        raise MongoBackupError(
            f"mongodb: nothing answers at {cfg.uri} ({err}); is the server running (`systemctl status ferretdb`)?"
        ) from None
    out = {"server_version": str(info.get("version", "?"))}
    if "ferretdbVersion" in info:
        out["ferretdb_version"] = str(info["ferretdbVersion"])
    return out


@contextlib.contextmanager
def _tool_config(cfg: MongoConfig) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="scalemart-mongo-", suffix=".yml")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp creates it 0600
            fh.write(f'uri: "{_uri(cfg)}"\n')
        yield Path(name)
    finally:
        os.unlink(name)


def _run(tool: str, args: list[str], cfg: MongoConfig, what: str) -> str:
    if not shutil.which(tool):
        raise MongoBackupError(
            f"{Path(tool).name}: {tool} not found; the backups role copies it from the "
            "control machine's .tools/bin (set mongodump/mongorestore in the config)"
        )
    with _tool_config(cfg) as conf:
        proc = subprocess.run([tool, f"--config={conf}", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise MongoBackupError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stderr


def tool_version(tool: str) -> str:
    if not shutil.which(tool):
        return "missing"
    proc = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else "?"


def dump(cfg: MongoConfig, tool: str, dest: Path) -> None:
    _run(tool, [f"--db={cfg.database}", f"--archive={dest}"], cfg, "mongodump")


def indexes(cfg: MongoConfig) -> dict[str, str]:
    """Secondary indexes per collection as extended JSON, recreated by `restore`.

    mongorestore's own index step sends the legacy `ns` option, which FerretDB rejects
    ("Index option "ns" is unknown"), so the restore skips it and uses these."""
    db = client(cfg)[cfg.database]
    out = {}
    for name in sorted(db.list_collection_names()):
        specs = []
        for spec in db[name].list_indexes():
            spec = dict(spec)
            if spec.get("name") == "_id_":
                continue
            spec.pop("v", None)
            spec.pop("ns", None)
            spec["key"] = list(dict(spec["key"]).items())
            specs.append(spec)
        if specs:
            out[name] = json_util.dumps(specs)
    return out


def restore(cfg: MongoConfig, tool: str, archive: Path, source_db: str, index_specs: dict[str, str]) -> None:
    """Make the database exactly the dumped one: drop it, restore every collection, then the indexes."""
    client(cfg).drop_database(cfg.database)
    args = [f"--archive={archive}", f"--nsInclude={source_db}.*", "--drop", "--stopOnError", "--noIndexRestore"]
    if source_db != cfg.database:
        args += [f"--nsFrom={source_db}.*", f"--nsTo={cfg.database}.*"]
    _run(tool, args, cfg, "mongorestore")
    db = client(cfg)[cfg.database]
    for collection, specs in index_specs.items():
        for spec in json_util.loads(specs):
            key = [(field, direction) for field, direction in spec.pop("key")]
            try:
                db[collection].create_index(key, **spec)
            except pymongo.errors.PyMongoError as err:
                raise MongoBackupError(
                    f"mongodb: recreating index {spec.get('name')} on {collection} failed ({err})"
                ) from None


def orders(cfg: MongoConfig, layout: Layout) -> dict[str, dict[str, int]]:
    """Orders and units per product.

    Summed here, not with $group: FerretDB 1.24 gets multi-accumulator $group wrong (the app's
    reconcile does the same), and a projected scan of the orders is cheap."""
    coll = client(cfg)[cfg.database][layout.orders_collection]
    out: dict[str, dict[str, int]] = {}
    try:
        for doc in coll.find(
            {}, {layout.order_product_field: 1, layout.order_quantity_field: 1, "_id": 0}, batch_size=10_000
        ):
            row = out.setdefault(str(doc.get(layout.order_product_field)), {"orders": 0, "units": 0})
            row["orders"] += 1
            row["units"] += int(doc.get(layout.order_quantity_field) or 0)
    except pymongo.errors.PyMongoError as err:
        raise MongoBackupError(f"mongodb: counting {cfg.database}.{layout.orders_collection} failed ({err})") from None
    return out


def collections(cfg: MongoConfig) -> list[str]:
    # Names only: FerretDB counts documents by scanning them, which costs as much as the dump.
    return sorted(client(cfg)[cfg.database].list_collection_names())
