"""Authenticated encryption of the config bundle with `cryptography`'s Fernet.

Fernet is AES-128-CBC with a random IV plus HMAC-SHA256 over the whole token (encrypt-then-MAC);
a wrong key or any changed byte fails the HMAC before anything is decrypted. Its 32-byte key is
derived from the configured key (`encryption_key_file`) with a fresh salt per archive, so no two
archives share a Fernet key:

    SMBKENC2 | salt (16 B, random) | Fernet token, base64-decoded
    Fernet key = PBKDF2-HMAC-SHA256(configured key, salt, 600 000 rounds, 32 B)

The token is stored as raw bytes, every one of them under the HMAC: in its base64 text the last
character carries unused bits, so one flipped bit there would still decrypt.

`cryptography` comes from the tool's bundle (pinned in backups/pyproject.toml), installed by the backups role.
"""

from __future__ import annotations

import base64
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

MAGIC = b"SMBKENC2"
# The hand-rolled scheme (SHAKE-256 keystream) used before Fernet; its archives are refused by name.
_MAGIC_V1 = b"SMBKENC1"
SALT_LEN = 16
# OWASP's figure for PBKDF2-HMAC-SHA256; about 0.2 s, once per backup or decrypt-config.
ITERATIONS = 600_000
MIN_KEY_LEN = 16


class DecryptionError(Exception):
    """Wrong key, or the ciphertext was changed."""


def _fernet(key: bytes, salt: bytes) -> Fernet:
    if len(key) < MIN_KEY_LEN:
        raise ValueError(
            f"the encryption key (encryption_key_file) is {len(key)} bytes; use at least {MIN_KEY_LEN} "
            "random bytes (the vault's backups_encryption_key has 48)"
        )
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=ITERATIONS)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(key)))


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    salt = os.urandom(SALT_LEN)
    return MAGIC + salt + base64.urlsafe_b64decode(_fernet(key, salt).encrypt(plaintext))


def decrypt(blob: bytes, key: bytes) -> bytes:
    if blob.startswith(_MAGIC_V1):
        raise DecryptionError(
            "this config bundle uses the tool's earlier hand-rolled scheme (SMBKENC1); decrypt "
            "it with backups/ as of commit 5b45a17 (git worktree add /tmp/old 5b45a17)"
        )
    if len(blob) <= len(MAGIC) + SALT_LEN or not blob.startswith(MAGIC):
        raise DecryptionError("not an encrypted ScaleMart config bundle (bad header)")
    salt, token = blob[len(MAGIC) : len(MAGIC) + SALT_LEN], blob[len(MAGIC) + SALT_LEN :]
    try:
        return _fernet(key, salt).decrypt(base64.urlsafe_b64encode(token))
    except InvalidToken:
        raise DecryptionError(
            "the config bundle does not authenticate: wrong encryption key, or the archive "
            "was altered (check encryption_key_file)"
        ) from None
