"""Buyer tokens for the simulated buyers, minted as the shop's own login would (scalemart.tokens).

Every simulated user buys with a token of its own: Locust users mint theirs when they start; wrk takes a
pool minted here, one token per buyer it cycles through. The key is the environment's
(`scalemart_buyer_token_key` in its vault), or SCALEMART_BUYER_TOKEN_KEY for a `--host` run.
"""

from __future__ import annotations

import os
import sys

from toolchain.common import ROOT

if str(ROOT / "app") not in sys.path:  # the shop's own token code, from source
    sys.path.insert(0, str(ROOT / "app"))

from scalemart import tokens  # noqa: E402

KEY_VAR = "SCALEMART_BUYER_TOKEN_KEY"
TTL_SECONDS = 6 * 3600  # longer than any load run


def key_for(env: str, host: str | None = None) -> str:
    """The buyer token key of `env` (its vault), or of the shop at `host` (SCALEMART_BUYER_TOKEN_KEY)."""
    key = os.environ.get(KEY_VAR, "")
    if key:
        return key
    if host:
        raise SystemExit(f"--host needs {KEY_VAR} in the environment (the key that shop signs buyer tokens with)")
    from ops import secrets

    key = secrets.load(env).get("scalemart_buyer_token_key", "")
    if not key:
        raise SystemExit(f"ENV={env} has no scalemart_buyer_token_key in its vault: run `make up ENV={env}` first")
    return key


def header(key: str, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(key, user_id, TTL_SECONDS).token}"}


def pool(key: str, prefix: str, n: int) -> list[tuple[str, str]]:
    """`n` buyers (user id, token) named `prefix`-0 … `prefix`-(n-1)."""
    return [(f"{prefix}-{i}", tokens.issue(key, f"{prefix}-{i}", TTL_SECONDS).token) for i in range(n)]
