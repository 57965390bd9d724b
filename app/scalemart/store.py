"""Redis keys, the Lua scripts that make a purchase one atomic step, and MongoDB collections.

Redis holds the live sale state of each product (stock, price, limit, sale window) and is
the authority for stock. A purchase is ONE Lua script: rate limit, idempotency lookup, sale
window, stock check, per-user limit, decrement, idempotency record and the hand-off of the
order to the `orders` stream. MongoDB holds the catalogue (source of the cached product
reads) and the persisted orders, written by the worker with the order id as `_id`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

PREFIX = "sm:"
STREAM = PREFIX + "orders"
GROUP = "persisters"
ACTIVE_USERS = PREFIX + "active"
VIEWS = PREFIX + "views"
ACTIVE_WINDOW_MS = 5 * 60 * 1000


def product_key(product_id: str) -> str:
    return f"{PREFIX}p:{product_id}"


def bought_key(product_id: str) -> str:
    return f"{PREFIX}bought:{product_id}"


def idem_key(user_id: str, key: str) -> str:
    return f"{PREFIX}idem:{user_id}:{key}"


def cache_key(product_id: str) -> str:
    return f"{PREFIX}cache:p:{product_id}"


CATALOGUE_CACHE = PREFIX + "cache:catalogue"
PRODUCTS = PREFIX + "products"


def rate_key(client: str) -> str:
    return f"{PREFIX}rl:{client}"


# KEYS: product, bought, idempotency, stream, active users, rate limit
# ARGV: user, product, quantity, order id, fingerprint, idempotency ttl, rate limit, rate window, idempotency key
# Returns {kind, json}: kind is "new" or "replay" (the stored first answer).
BUY_LUA = """
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local rl_limit = tonumber(ARGV[7])
if rl_limit > 0 then
  local n = redis.call('INCR', KEYS[6])
  if n == 1 then redis.call('EXPIRE', KEYS[6], ARGV[8]) end
  if n > rl_limit then
    return {'new', cjson.encode({result='rate_limited', retry_after=redis.call('TTL', KEYS[6])})}
  end
end
redis.call('ZADD', KEYS[5], now_ms, ARGV[1])
local prev = redis.call('GET', KEYS[3])
if prev then return {'replay', prev} end
local p = redis.call('HMGET', KEYS[1], 'stock', 'price_cents', 'per_user_limit', 'open', 'starts_at', 'ends_at')
if not p[1] then return {'new', cjson.encode({result='unknown_product'})} end
local qty = tonumber(ARGV[3])
local stock = tonumber(p[1])
local starts = tonumber(p[5]) or 0
local ends = tonumber(p[6]) or 0
local res
if p[4] ~= '1' or (starts > 0 and now_s < starts) or (ends > 0 and now_s >= ends) then
  res = {result='closed', stock_left=stock}
elseif stock < qty then
  res = {result='out_of_stock', stock_left=stock}
else
  local bought = tonumber(redis.call('HGET', KEYS[2], ARGV[1])) or 0
  local limit = tonumber(p[3])
  if bought + qty > limit then
    res = {result='limit_exceeded', already_bought=bought, per_user_limit=limit, stock_left=stock}
  else
    local price = tonumber(p[2])
    local left = redis.call('HINCRBY', KEYS[1], 'stock', -qty)
    redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
    redis.call('XADD', KEYS[4], '*', 'order_id', ARGV[4], 'user_id', ARGV[1], 'product_id', ARGV[2],
      'quantity', qty, 'unit_price_cents', price, 'total_cents', price * qty, 'created_at_ms', now_ms,
      'idempotency_key', ARGV[9])
    res = {result='success', order_id=ARGV[4], unit_price_cents=price, total_cents=price * qty,
      created_at_ms=now_ms, stock_left=left}
  end
end
res.fingerprint = ARGV[5]
local enc = cjson.encode(res)
redis.call('SET', KEYS[3], enc, 'EX', ARGV[6])
return {'new', enc}
"""

# KEYS: product.  ARGV: stock, price_cents, per_user_limit, open, starts_at, ends_at.  1 = created, 0 = existed.
CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'stocked', ARGV[1], 'price_cents', ARGV[2],
  'per_user_limit', ARGV[3], 'open', ARGV[4], 'starts_at', ARGV[5], 'ends_at', ARGV[6])
return 1
"""

# KEYS: product.  ARGV: quantity.  Returns {stock, stocked} or -1 when the product has no sale state.
RESTOCK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return {redis.call('HINCRBY', KEYS[1], 'stock', ARGV[1]), redis.call('HINCRBY', KEYS[1], 'stocked', ARGV[1])}
"""

# KEYS: product.  ARGV: open, starts_at, ends_at.
SALE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'open', ARGV[1], 'starts_at', ARGV[2], 'ends_at', ARGV[3])
return 1
"""

# KEYS: product, cache, views.  Returns {cached catalogue or false, stock, stocked}; counts a view of a real product.
READ_LUA = """
local s = redis.call('HMGET', KEYS[1], 'stock', 'stocked')
if s[1] and ARGV[1] == '1' then redis.call('HINCRBY', KEYS[3], ARGV[2], 1) end
return {redis.call('GET', KEYS[2]), s[1], s[2]}
"""

# KEYS: rate limit.  ARGV: limit, window.  Returns 0 when allowed, else seconds to wait.
RATE_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return math.max(redis.call('TTL', KEYS[1]), 1) end
return 0
"""

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class BoundedRedis(aioredis.Redis):
    """Commands wait for a free slot instead of failing with "Too many connections" in a stampede.

    redis-py's BlockingConnectionPool does the same but costs about a third of a purchase's CPU;
    a semaphore in front of the plain pool is nearly free. Pipelines bypass it and use the headroom.
    """

    def __init__(self, *args: Any, slots: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = asyncio.Semaphore(slots)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with self._slots:
            return await super().execute_command(*args, **options)


def redis_client(url: str, max_connections: int = 256) -> aioredis.Redis:
    pool = aioredis.ConnectionPool.from_url(
        url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=5.0, max_connections=max_connections,
        health_check_interval=0, client_name=f"scalemart-{socket.gethostname()}")
    # One retry on a broken pooled connection (after a Redis restart) so the first request
    # afterwards does not fail; purchases stay safe because retries carry the same idempotency key.
    return BoundedRedis(connection_pool=pool, retry=Retry(NoBackoff(), 1),
                        retry_on_error=[redis.exceptions.ConnectionError], slots=max_connections - 32)


@dataclass
class Scripts:
    buy: Any
    create: Any
    restock: Any
    sale: Any
    rate: Any
    read: Any


def register_scripts(r: aioredis.Redis) -> Scripts:
    return Scripts(buy=r.register_script(BUY_LUA), create=r.register_script(CREATE_LUA),
                   restock=r.register_script(RESTOCK_LUA), sale=r.register_script(SALE_LUA),
                   rate=r.register_script(RATE_LUA), read=r.register_script(READ_LUA))


def cents_to_units(cents: int) -> float:
    return round(cents / 100, 2)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
