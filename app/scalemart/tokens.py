"""Buyer tokens: who is buying, signed by the shop (JWT, HS256, PyJWT).

The shop's own login service hands a buyer a token minted here (`scalemart token issue`, or
`POST /api/admin/tokens`); the buyer sends it as `Authorization: Bearer <token>`. Its `sub` is the
user and `exp` its expiry. The key is generated per environment and kept in the vault
(SCALEMART_BUYER_TOKEN_KEY). The algorithm is fixed here, never read from the token, so `alg: none`
and a switch to another algorithm are refused as any bad signature is.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from scalemart.models import USER_ID

ALGORITHM = "HS256"
MAX_TTL_SECONDS = 30 * 86400
_USER = re.compile(USER_ID)
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# why a token was refused: the `reason` of the 401 and of scalemart_token_failures_total
REASONS = ("missing", "malformed", "expired", "bad_signature", "bad_claims")


class TokenError(Exception):
    """A refused token; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Issued:
    token: str
    user_id: str
    expires_at: int  # unix seconds


def parse_ttl(text: str, name: str = "--ttl") -> int:
    """'15m', '2h', '900' -> seconds; anything else, 0 or beyond MAX_TTL_SECONDS names `name` and the fix."""
    found = _TTL.match(text.strip())
    seconds = int(found.group(1)) * _UNIT[found.group(2)] if found else 0
    if not found or seconds <= 0 or seconds > MAX_TTL_SECONDS:
        raise ValueError(f"{name} must be a positive duration up to 30d, e.g. 15m, 2h or 900 (seconds); got {text!r}")
    return seconds


def issue(key: str, user_id: str, ttl_seconds: int, now: float | None = None) -> Issued:
    if not _USER.match(user_id):
        raise ValueError(f"user id {user_id!r} must match {USER_ID}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 s and {MAX_TTL_SECONDS} s (30 days); got {ttl_seconds}")
    issued_at = int(now if now is not None else time.time())
    expires = issued_at + ttl_seconds
    token = jwt.encode({"sub": user_id, "iat": issued_at, "exp": expires}, key, algorithm=ALGORITHM)
    return Issued(token, user_id, expires)


def verify(key: str, token: str) -> str:
    """The user a token names; TokenError with the reason otherwise."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", "the token has expired; ask the shop's login for a new one") from None
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise TokenError(
            "bad_signature", f"the token is not signed by this shop (only {ALGORITHM} with the shop's key is accepted)"
        ) from None
    except jwt.DecodeError:
        raise TokenError("malformed", "the token is not a JWT (three base64url parts)") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError("bad_claims", f"the token's claims are not valid: {exc}") from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not _USER.match(sub):
        raise TokenError("bad_claims", f"the token's sub must be a user id matching {USER_ID}")
    return sub
