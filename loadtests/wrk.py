"""wrk (Debian) runs for the benchmarks: `make bench-env` through an environment's balancer and
`make bench-app` straight at one app. One Lua script makes every buy a new sale (a fresh user and
idempotency key per request), one reports the figures as JSON; the CPU wrk itself used is measured
from its resource usage, since wrk shares the machine's cores with what it measures.
"""

from __future__ import annotations

import json
import resource
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

# Each request is a purchase by the next buyer of the pool (TOKENS: one buyer token each, minted by
# loadtests.buyers) with a new idempotency key; the buyers' per-user limit must cover their share.
BUY_SCRIPT = r"""
local counter = 0
local prefix = ""
local tokens = {TOKENS}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", "NONCE" .. threads)
end
function init(args)
  prefix = tid
end
function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer " .. tokens[counter % #tokens + 1]}
  local body = string.format('{"product_id":"PRODUCT","quantity":1,"idempotency_key":"k%s-%010d"}',
    prefix, counter)
  return wrk.format("POST", "/api/buy", headers, body)
end
"""
BUYERS = 2000

REPORT_SCRIPT = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"p50":%d,"p95":%d,"p99":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class WrkError(RuntimeError):
    """wrk is missing or failed; the message says what to do."""


def require() -> None:
    if shutil.which("wrk") is None:
        raise WrkError("`wrk` is missing: run `make bootstrap` (installs it from Debian)")


def run(
    url: str,
    path: str,
    connections: int,
    seconds: float,
    threads: int,
    work: Path,
    buy_product: str | None = None,
    buyer_key: str = "",
) -> dict[str, Any]:
    """One wrk run; `buy_product` makes it POST /api/buy sales of that product (by BUYERS buyers, their tokens
    signed with `buyer_key`), else it GETs `path`.

    Returns requests, rps, p50/p95/p99 in µs, socket errors by kind, non-2xx (`status`), `errors`
    (their sum) and `cpu_s`, the CPU seconds wrk itself used.
    """
    script = work / ("buy.lua" if buy_product else "get.lua")
    # a fresh nonce per run: keys never repeat across runs, so every buy is a new sale, not a replay
    body = ""
    if buy_product:
        from loadtests import buyers

        if not buyer_key:
            raise WrkError("a buy run needs the buyer token key (loadtests.buyers.key_for)")
        pool = ", ".join(f'"{token}"' for _, token in buyers.pool(buyer_key, f"wrk-{secrets.token_hex(3)}", BUYERS))
        body = BUY_SCRIPT.replace("NONCE", secrets.token_hex(4)).replace("PRODUCT", buy_product).replace("TOKENS", pool)
    script.write_text(body + REPORT_SCRIPT)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + path,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise WrkError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["errors"] = out["connect"] + out["read"] + out["write"] + out["status"] + out["timeout"]
    out["socket_errors"] = out["connect"] + out["read"] + out["write"] + out["timeout"]
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out
