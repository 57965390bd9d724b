"""Symmetric, authenticated encryption of the config bundle with the standard library only.

The data host has no `cryptography` module (only python3 and what the role installs), and the
archive must never hold a secret in clear. The scheme is encrypt-then-MAC from hashlib/hmac:

    salt (16 B, random) -> PBKDF2-HMAC-SHA256(key, salt, 200 000) -> enc key | mac key (32 B each)
    keystream = SHAKE-256("scalemart-backups/v1" | enc key | nonce)   (nonce 16 B, random)
    body      = plaintext XOR keystream
    tag       = HMAC-SHA256(mac key, header | salt | nonce | body)

SHAKE-256 is an extendable-output function (FIPS 202); keyed with a fresh nonce it is a stream
cipher. A wrong key or any flipped bit fails the tag check before a byte is decrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

MAGIC = b"SMBKENC1"
SALT_LEN = 16
NONCE_LEN = 16
TAG_LEN = 32
ITERATIONS = 200_000
DOMAIN = b"scalemart-backups/v1"
MIN_KEY_LEN = 16


class DecryptionError(Exception):
    """Wrong key, or the ciphertext was changed."""


def _keys(key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"the encryption key is {len(key)} bytes; use at least {MIN_KEY_LEN} random bytes "
                         "(the vault's backups_encryption_key has 48)")
    derived = hashlib.pbkdf2_hmac("sha256", key, salt, ITERATIONS, dklen=64)
    return derived[:32], derived[32:]


def _xor(data: bytes, enc_key: bytes, nonce: bytes) -> bytes:
    stream = hashlib.shake_256(DOMAIN + enc_key + nonce).digest(len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    salt, nonce = secrets.token_bytes(SALT_LEN), secrets.token_bytes(NONCE_LEN)
    enc_key, mac_key = _keys(key, salt)
    body = _xor(plaintext, enc_key, nonce) if plaintext else b""
    head = MAGIC + salt + nonce
    return head + body + hmac.new(mac_key, head + body, hashlib.sha256).digest()


def decrypt(blob: bytes, key: bytes) -> bytes:
    if len(blob) < len(MAGIC) + SALT_LEN + NONCE_LEN + TAG_LEN or not blob.startswith(MAGIC):
        raise DecryptionError("not an encrypted ScaleMart config bundle (bad header)")
    salt = blob[len(MAGIC):len(MAGIC) + SALT_LEN]
    nonce = blob[len(MAGIC) + SALT_LEN:len(MAGIC) + SALT_LEN + NONCE_LEN]
    head_len = len(MAGIC) + SALT_LEN + NONCE_LEN
    body, tag = blob[head_len:-TAG_LEN], blob[-TAG_LEN:]
    enc_key, mac_key = _keys(key, salt)
    if not hmac.compare_digest(tag, hmac.new(mac_key, blob[:-TAG_LEN], hashlib.sha256).digest()):
        raise DecryptionError("the config bundle does not authenticate: wrong encryption key, or the archive "
                              "was altered (check encryption_key_file)")
    return _xor(body, enc_key, nonce) if body else b""
