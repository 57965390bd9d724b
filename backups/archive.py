"""The archive: its name, its members, the manifest, and the checks a restore runs before it
touches anything.

    scalemart_backup_<env>_<UTC yyyymmdd_HHMMSS>.tar.gz
        manifest.json        checksums and sizes of the members below, tool versions, counts
        mongodb.archive      mongodump --archive of the app database
        redis/dump.rdb       the RDB of a finished BGSAVE
        config.tar.enc       the environment's rendered config, encrypted (backups/crypto.py)
    scalemart_backup_<env>_<...>.tar.gz.sha256   `sha256sum -c` compatible, next to it
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^scalemart_backup_(?P<env>[a-z][a-z0-9-]*)_(?P<stamp>\d{8}_\d{6})\.tar\.gz$")
STAMP = "%Y%m%d_%H%M%S"
MANIFEST = "manifest.json"
MONGO = "mongodb.archive"
REDIS = "redis/dump.rdb"
CONFIG = "config.tar.enc"
MEMBERS = (MONGO, REDIS, CONFIG)
FORMAT = 1
CHUNK = 1 << 20


class ArchiveError(Exception):
    """The archive is damaged or not what the restore expects; nothing was touched."""


class WrongEnvironment(ArchiveError):
    pass


def name_for(env: str, when: datetime) -> str:
    return f"scalemart_backup_{env}_{when.astimezone(UTC).strftime(STAMP)}.tar.gz"


@dataclass(frozen=True)
class Entry:
    path: Path
    env: str
    created: datetime

    @property
    def sidecar(self) -> Path:
        return sidecar(self.path)


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def parse_name(path: Path) -> Entry | None:
    match = NAME_RE.match(path.name)
    if not match:
        return None
    created = datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC)
    return Entry(path, match["env"], created)


def listing(directory: Path, env: str | None = None) -> list[Entry]:
    """Archives in directory (of one environment when given), oldest first."""
    if not directory.is_dir():
        return []
    entries = [e for p in directory.iterdir() if p.is_file() and (e := parse_name(p))]
    return sorted((e for e in entries if env is None or e.env == env), key=lambda e: (e.created, e.path.name))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write(dest: Path, staging: Path, manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Pack staging's members and the manifest into dest (atomically) and write the sidecar.

    Returns the archive's sha256 and the manifest as written."""
    files = {}
    for member in MEMBERS:
        path = staging / member
        files[member] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    manifest = {**manifest, "format": FORMAT, "files": files}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    partial = dest.with_name("." + dest.name + ".partial")
    # 0600 from the first byte: the archive holds every order and user id of the shop.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    # compresslevel 6: level 9 costs ~3x the CPU on this data for a few percent
    with tarfile.open(partial, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(body), int(datetime.now(UTC).timestamp()), 0o600
        tar.addfile(info, io.BytesIO(body))
        for member in MEMBERS:
            tar.add(staging / member, arcname=member, recursive=False, filter=_private)
    _fsync(partial)
    digest = sha256_file(partial)
    side_partial = partial.with_name(partial.name + ".sha256")
    side_partial.write_text(f"{digest}  {dest.name}\n")
    _fsync(side_partial)
    os.replace(partial, dest)
    os.replace(side_partial, sidecar(dest))
    _fsync_dir(dest.parent)
    return digest, manifest


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o600
    return info


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_sidecar(path: Path) -> str | None:
    """Compare the archive with its .sha256 file; returns the digest, or None when there is no sidecar."""
    side = sidecar(path)
    if not side.exists():
        return None
    expected = side.read_text().split()[0] if side.read_text().split() else ""
    actual = sha256_file(path)
    if actual != expected:
        raise ArchiveError(
            f"{path.name}: sha256 is {actual} but {side.name} says {expected}: the archive is "
            "corrupt or incomplete; restore another archive (`python -m backups list`)"
        )
    return actual


def extract(path: Path, dest: Path) -> dict[str, Any]:
    """Verify and unpack an archive into dest; return its manifest.

    Every member is checked against the manifest's sha256 and size, and the gzip CRC covers the
    rest. Only the expected regular files are written: a crafted name cannot escape dest."""
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive; list them with `python -m backups list`")
    check_sidecar(path)
    manifest: dict[str, Any] | None = None
    seen: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for info in tar:
                if info.name == MANIFEST and info.isfile():
                    fh = tar.extractfile(info)
                    assert fh is not None
                    manifest = json.loads(fh.read())
                    continue
                if info.name not in MEMBERS or not info.isfile():
                    raise ArchiveError(f"{path.name}: unexpected member {info.name!r}; not a ScaleMart backup")
                target = dest / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                size = 0
                src = tar.extractfile(info)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                seen[info.name] = {"sha256": digest.hexdigest(), "size": size}
            # tarfile stops at the end-of-archive blocks; reading on to EOF makes gzip check its
            # trailer (CRC-32 and length), so a damaged trailer or trailing junk is caught too.
            assert tar.fileobj is not None
            while tar.fileobj.read(CHUNK):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise ArchiveError(
            f"{path.name}: cannot be read ({type(err).__name__}: {err}): the archive is corrupt; "
            "restore another archive (`python -m backups list`)"
        ) from None
    if manifest is None:
        raise ArchiveError(f"{path.name}: has no {MANIFEST}; not a ScaleMart backup")
    if manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path.name}: manifest format {manifest.get('format')!r}; this tool reads format {FORMAT}")
    for member in MEMBERS:
        want = manifest.get("files", {}).get(member)
        got = seen.get(member)
        if want is None or got is None:
            raise ArchiveError(f"{path.name}: member {member} is missing")
        if want != got:
            raise ArchiveError(
                f"{path.name}: {member} has sha256 {got['sha256']} ({got['size']} B) but the manifest "
                f"says {want['sha256']} ({want['size']} B): the archive is corrupt"
            )
    return manifest


def check_environment(manifest: dict[str, Any], env: str, force: bool, name: str) -> None:
    theirs = manifest.get("environment")
    if theirs != env and not force:
        raise WrongEnvironment(
            f"{name} was taken in environment {theirs!r}, this host is {env!r}: refusing; "
            "pass --force (FORCE=1 with make) to restore it here anyway"
        )
