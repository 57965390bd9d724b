"""Business Metrics: orders, revenue, stock and how well flash-sale views turn into purchases."""

from __future__ import annotations

from grafanalib.core import BarGauge, Dashboard

from alert_rules import signals as s
from alert_rules.thresholds import Thresholds
from dashboards.common import DATASOURCE, Layout, dashboard, stat, steps, target, threshold_of, timeseries

TITLE = "Business Metrics"
UID = "scalemart-business"
q = s.PANELS


def conversion(by: str = "") -> str:
    success = q.sum_rate("scalemart_purchase_attempts_total", 'result="success"', by=by)
    views = q.sum_rate("scalemart_product_views_total", by=by)
    return s.ratio(success, views)


def build(t: Thresholds) -> Dashboard:
    stock = threshold_of(s.STOCK_LEFT, t)
    lay = Layout()
    lay.add(stat("Orders per minute", q.per_minute("scalemart_orders_total"), "short"), w=6, h=5)
    lay.add(stat("Revenue last hour", q.sum_increase("scalemart_revenue_total", over="1h"), "currencyUSD"), w=6, h=5)
    # Over the last hour, not at this instant: between sales both rates are 0 and their ratio is NaN,
    # which a stat shows as "No data".
    lay.add(
        stat(
            "Flash-sale conversion",
            s.ratio(
                q.sum_increase("scalemart_purchase_attempts_total", 'result="success"', over="1h"),
                q.sum_increase("scalemart_product_views_total", over="1h"),
            ),
            "percentunit",
            description="Successful purchases per product view over the last hour.",
        ),
        w=6,
        h=5,
    )
    # the products ScaleMartLowStock is pending or firing for, at its mildest tier
    low = s.STOCK_LEFT.breach(stock.tiers()[0][1], stock.low_is_bad, s.PANEL_SELECTOR)
    lay.add(stat("Products low on stock", f"count({low}) or vector(0)", "short", stock), w=6, h=5)
    lay.add(
        stat(
            "Sold out products",
            f"count({s.SOLD_OUT.panel()} == 0) or vector(0)",
            "short",
            description="Products with no units left: the expected end of a flash sale.",
        ),
        w=6,
        h=5,
    )
    lay.add(
        timeseries(
            "Orders per minute by product",
            [target(q.per_minute("scalemart_orders_total", by="product"), "{{product}}")],
            "short",
        )
    )
    lay.add(
        timeseries(
            "Revenue per hour",
            [target(q.sum_increase("scalemart_revenue_total", over="1h"), "revenue/h")],
            "currencyUSD",
        )
    )
    lay.add(
        BarGauge(
            title="Stock left by product",
            dataSource=DATASOURCE,
            targets=[target(s.STOCK_LEFT.panel(), "{{product}}", instant=True)],
            thresholds=steps(stock),
            displayMode="gradient",
            orientation="horizontal",
            format="short",
            calc="lastNotNull",
        )
    )
    lay.add(
        timeseries(
            "Purchase attempts by result",
            [target(q.sum_rate("scalemart_purchase_attempts_total", by="result"), "{{result}}")],
            "ops",
        )
    )
    lay.add(timeseries("Conversion by product", [target(conversion("product"), "{{product}}")], "percentunit"))
    lay.add(
        timeseries(
            "Product views", [target(q.sum_rate("scalemart_product_views_total", by="product"), "{{product}}")], "ops"
        )
    )
    return dashboard(TITLE, UID, lay, "Orders, revenue, stock levels and flash-sale conversion.", ["business"])
