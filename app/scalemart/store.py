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


def user_orders_key(user_id: str) -> str:
    return f"{PREFIX}uo:{user_id}"


def cache_key(product_id: str) -> str:
    return f"{PREFIX}cache:p:{product_id}"


def sales_minute_key(minute: int) -> str:
    """Orders and revenue_cents of one minute (unix time // 60), kept two hours."""
    return f"{PREFIX}sales:m:{minute}"


def sales_day_key(day: int) -> str:
    """Orders, revenue_cents and first_time_buyers of one UTC day (unix time // 86400), kept two days."""
    return f"{PREFIX}sales:d:{day}"


def buyers_day_key(day: int) -> str:
    """The users who bought on one UTC day."""
    return f"{PREFIX}buyers:d:{day}"


# every buyer's first purchase (unix ms): whether a buyer is new or returning
BUYERS = PREFIX + "buyers"
# users seen (a buy, their orders read) are kept a day in ACTIVE_USERS, scored by when they were last seen
ACTIVE_RETENTION_MS = 24 * 3600 * 1000
CATALOGUE_CACHE = PREFIX + "cache:catalogue"
PRODUCTS = PREFIX + "products"


def rate_key(client: str) -> str:
    return f"{PREFIX}rl:{client}"


# One call buys for a whole batch of requests (see BuyBatcher): each purchase is still checked and
# applied atomically, and the batch costs one round trip instead of one per request.
# Key names are built inside the script, so it needs a single Redis instance (not Redis Cluster).
# A sale also counts itself on the product (orders, revenue_cents: the admin stats) and heads the
# user's order list (the newest `kept` orders, expiring `history ttl` seconds after the last one), so
# neither read scans MongoDB, where FerretDB/SQLite filters every order in turn.
# KEYS: stream, active users.  ARGV: n, idempotency ttl, rate limit, rate window, kept, history ttl,
# then per purchase: user, product, quantity, order id, idempotency key, client.
# Returns 2n values: kind ("new" or "replay" = the stored first answer) and the answer JSON.
BUY_LUA = (
    """
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, ttl, rl_limit, rl_window = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local kept, history_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local P = '"""
    + PREFIX
    + """'

local function buy(user, product, qty_s, order_id, key, client)
  if rl_limit > 0 then
    local rk = P .. 'rl:' .. client
    local c = redis.call('INCR', rk)
    if c == 1 then redis.call('EXPIRE', rk, rl_window) end
    if c > rl_limit then
      return 'new', cjson.encode({result='rate_limited', retry_after=redis.call('TTL', rk)})
    end
  end
  redis.call('ZADD', KEYS[2], now_ms, user)
  local ik = P .. 'idem:' .. user .. ':' .. key
  local prev = redis.call('GET', ik)
  if prev then return 'replay', prev end
  local pk = P .. 'p:' .. product
  local p = redis.call('HMGET', pk, 'stock', 'price_cents', 'per_user_limit', 'open', 'starts_at', 'ends_at')
  if not p[1] then return 'new', cjson.encode({result='unknown_product'}) end
  local qty = tonumber(qty_s)
  local stock = tonumber(p[1])
  local starts = tonumber(p[5]) or 0
  local ends = tonumber(p[6]) or 0
  local res
  if p[4] ~= '1' or (starts > 0 and now_s < starts) or (ends > 0 and now_s >= ends) then
    res = {result='closed', stock_left=stock}
  elseif stock < qty then
    res = {result='out_of_stock', stock_left=stock}
  else
    local bk = P .. 'bought:' .. product
    local bought = tonumber(redis.call('HGET', bk, user)) or 0
    local limit = tonumber(p[3])
    if bought + qty > limit then
      res = {result='limit_exceeded', already_bought=bought, per_user_limit=limit, stock_left=stock}
    else
      local price = tonumber(p[2])
      local left = redis.call('HINCRBY', pk, 'stock', -qty)
      redis.call('HINCRBY', bk, user, qty)
      redis.call('HINCRBY', pk, 'orders', 1)
      redis.call('HINCRBY', pk, 'revenue_cents', price * qty)
      local uk = P .. 'uo:' .. user
      redis.call('LPUSH', uk, cjson.encode({order_id=order_id, product_id=product, quantity=qty,
        unit_price_cents=price, total_cents=price * qty, created_at_ms=now_ms}))
      redis.call('LTRIM', uk, 0, kept - 1)
      if history_ttl > 0 then redis.call('EXPIRE', uk, history_ttl) else redis.call('PERSIST', uk) end
      -- the analytics console's time buckets: orders and revenue per minute (the last hour) and per
      -- UTC day, with the day's buyers and how many of them bought for the first time
      local mk = P .. 'sales:m:' .. math.floor(now_s / 60)
      redis.call('HINCRBY', mk, 'orders', 1)
      redis.call('HINCRBY', mk, 'revenue_cents', price * qty)
      redis.call('EXPIRE', mk, 7200)
      local day = math.floor(now_s / 86400)
      local dk = P .. 'sales:d:' .. day
      redis.call('HINCRBY', dk, 'orders', 1)
      redis.call('HINCRBY', dk, 'revenue_cents', price * qty)
      if redis.call('HSETNX', P .. 'buyers', user, now_ms) == 1 then
        redis.call('HINCRBY', dk, 'first_time_buyers', 1)
      end
      redis.call('EXPIRE', dk, 172800)
      local bdk = P .. 'buyers:d:' .. day
      redis.call('SADD', bdk, user)
      redis.call('EXPIRE', bdk, 172800)
      redis.call('XADD', KEYS[1], '*', 'order_id', order_id, 'user_id', user, 'product_id', product,
        'quantity', qty, 'unit_price_cents', price, 'total_cents', price * qty, 'created_at_ms', now_ms,
        'idempotency_key', key)
      res = {result='success', order_id=order_id, unit_price_cents=price, total_cents=price * qty,
        created_at_ms=now_ms, stock_left=left}
    end
  end
  res.fingerprint = product .. '|' .. qty_s
  local enc = cjson.encode(res)
  redis.call('SET', ik, enc, 'EX', ttl)
  return 'new', enc
end

local out = {}
for i = 0, n - 1 do
  local b = 7 + i * 6
  local kind, answer = buy(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5])
  out[#out + 1] = kind
  out[#out + 1] = answer
end
return out
"""
)

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

# KEYS: product, cache, views.  ARGV: product id.  Returns {cached catalogue or false, stock, stocked};
# counts a view of a real product.
READ_LUA = """
local s = redis.call('HMGET', KEYS[1], 'stock', 'stocked')
if s[1] then redis.call('HINCRBY', KEYS[3], ARGV[1], 1) end
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
        url,
        decode_responses=True,
        socket_connect_timeout=0.5,
        socket_timeout=5.0,
        max_connections=max_connections,
        health_check_interval=0,
        client_name=f"scalemart-{socket.gethostname()}",
    )
    # One retry on a broken pooled connection (after a Redis restart) so the first request
    # afterwards does not fail; purchases stay safe because retries carry the same idempotency key.
    return BoundedRedis(
        connection_pool=pool,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        slots=max_connections - 32,
    )


class BuyBatcher:
    """Coalesces concurrent purchases of one process into one script call.

    While a call is in flight, new purchases queue up and go together in the next call, so under
    load the per-request cost of a Redis round trip (most of a purchase's CPU in redis-py) is shared;
    an idle server sends a lone purchase at once.
    """

    MAX_BATCH = 256

    def __init__(
        self, script: Any, idem_ttl: int, rate_limit: int, rate_window: int, kept: int, history_ttl: int
    ) -> None:
        self.script = script
        self.head = [idem_ttl, rate_limit, rate_window, kept, history_ttl]
        self.pending: list[tuple[list[Any], asyncio.Future[tuple[str, str]]]] = []
        self.running = False

    async def buy(
        self, user: str, product: str, quantity: int, order_id: str, key: str, client: str
    ) -> tuple[str, str]:
        fut: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.pending.append(([user, product, quantity, order_id, key, client], fut))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
                args: list[Any] = [len(batch), *self.head]
                for purchase, _ in batch:
                    args.extend(purchase)
                try:
                    out = await self.script(keys=[STREAM, ACTIVE_USERS], args=args)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which answers 503
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for i, (_, fut) in enumerate(batch):
                    if not fut.done():  # the client may have gone away
                        fut.set_result((out[2 * i], out[2 * i + 1]))
        finally:
            self.running = False


@dataclass
class Scripts:
    buy: Any
    create: Any
    restock: Any
    sale: Any
    rate: Any
    read: Any


def register_scripts(r: aioredis.Redis) -> Scripts:
    return Scripts(
        buy=r.register_script(BUY_LUA),
        create=r.register_script(CREATE_LUA),
        restock=r.register_script(RESTOCK_LUA),
        sale=r.register_script(SALE_LUA),
        rate=r.register_script(RATE_LUA),
        read=r.register_script(READ_LUA),
    )


def cents_to_units(cents: int) -> float:
    return round(cents / 100, 2)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
