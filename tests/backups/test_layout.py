"""The app's data layout as backups reads it. The app package is not installed on the data host, so
backups/config.py repeats its key names (Layout); here they are held to the app's own constants and
to what the app's own code writes."""

from __future__ import annotations

from backups import config, mongo_ops, redis_ops
from tests.backups import shop
from tests.backups.conftest import Host

# The app's own modules: tests/backups/shop.py puts app/ on sys.path and imports them.
store, order_doc = shop.store, shop.order_doc
LAYOUT = config.Layout()
ORDER = {
    "order_id": "ord-1",
    "user_id": "user-1",
    "product_id": "p-1",
    "quantity": "3",
    "unit_price_cents": "100",
    "total_cents": "300",
    "created_at_ms": "1700000000000",
    "idempotency_key": "key-1",
}


def test_the_redis_names_are_the_stores() -> None:
    assert LAYOUT.orders_stream == store.STREAM
    assert LAYOUT.product_key_prefix == store.product_key("")


def test_the_order_fields_are_the_workers() -> None:
    doc = order_doc("1700000000000-0", ORDER)
    assert (doc[LAYOUT.order_product_field], doc[LAYOUT.order_quantity_field]) == ("p-1", 3)


def test_backups_count_what_the_app_wrote(host: Host) -> None:
    r = host.redis.client()
    r.register_script(store.CREATE_LUA)(keys=[store.product_key("p-1")], args=[50, 100, 5, 1, 0, 0])
    r.xadd(store.STREAM, ORDER)  # type: ignore[arg-type]
    cfg = config.parse(host.config)
    assert redis_ops.stock(redis_ops.client(cfg.redis), cfg.layout) == {"p-1": 50}
    assert (redis_ops.queue_signature(cfg.redis, cfg.layout) or (0,))[0] == 1

    from pydantic import SecretStr
    from scalemart.settings import Settings
    from scalemart.worker import Worker

    worker = Worker(
        Settings(
            redis_url=host.redis.url,
            mongo_url=host.ferret.url,
            mongo_db=host.database,
            admin_token=SecretStr("layout-test-" + "t" * 16),
            buyer_token_key=SecretStr("layout-test-buyer-" + "k" * 32),
        )
    )
    try:
        assert worker.step(block_ms=10) == 1
        assert worker.orders.name == LAYOUT.orders_collection
    finally:
        worker.mongo.close()
        worker.redis.close()
    assert mongo_ops.orders(cfg.mongodb, cfg.layout) == {"p-1": {"orders": 1, "units": 3}}
