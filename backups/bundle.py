"""The environment's rendered config (redis.conf, ferretdb.env, /etc/scalemart, ...) as one
encrypted tar: the files hold passwords, so the archive only ever carries ciphertext."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from backups import crypto


class BundleError(Exception):
    pass


def pack(paths: list[str], key: bytes, skip: list[Path] | None = None) -> tuple[bytes, list[dict[str, Any]]]:
    """Encrypted tar of the files under `paths`; returns (ciphertext, [{path, size}])."""
    skipped = {p.resolve() for p in skip or []}
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_absolute():
            raise BundleError(f"config_paths: {raw!r} must be an absolute path")
        if not path.exists():
            raise BundleError(
                f"config_paths: {raw} does not exist on this host; fix the list in the config "
                "(backups role variable backups_config_paths)"
            )
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += [p for p in candidates if p.resolve() not in skipped]
    buf = io.BytesIO()
    listing = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            try:
                tar.add(path, arcname=str(path).lstrip("/"), recursive=False)
            except OSError as err:
                raise BundleError(f"config_paths: cannot read {path} ({err.strerror}); run as root") from None
            listing.append({"path": str(path), "size": path.stat().st_size})
    return crypto.encrypt(buf.getvalue(), key), listing


def unpack(blob: bytes, key: bytes, dest: Path) -> list[str]:
    """Decrypt and write the config files under dest (never outside it); returns the written paths."""
    plain = crypto.decrypt(blob, key)
    written = []
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r") as tar:
        for info in tar:
            rel = PurePosixPath(info.name)
            if rel.is_absolute() or ".." in rel.parts or not info.isfile():
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            src = tar.extractfile(info)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(src.read())
            written.append(str(target))
    return written
