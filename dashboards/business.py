"""Business Metrics: orders, revenue, stock and how well flash-sale views turn into purchases."""

from __future__ import annotations

from grafanalib.core import BarGauge, Dashboard

from alert_rules.thresholds import Thresholds
from dashboards import promql as q
from dashboards.common import DATASOURCE, Layout, dashboard, stat, steps, target, timeseries

TITLE = "Business Metrics"
UID = "scalemart-business"


def conversion(by: str = "") -> str:
    success = q.sum_rate("scalemart_purchase_attempts_total", 'result="success"', by)
    views = q.sum_rate("scalemart_product_views_total", "", by)
    return q.ratio(success, views)


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.add(stat("Orders per minute", q.per_minute("scalemart_orders_total"), "short"), w=6, h=5)
    lay.add(stat("Revenue last hour", f"sum(increase({q.sel('scalemart_revenue_total')}[1h]))", "currencyUSD"),
            w=6, h=5)
    lay.add(stat("Flash-sale conversion", conversion(), "percentunit",
                 description="Successful purchases per product view."), w=6, h=5)
    lay.add(stat("Products low on stock", f"count({q.sel('scalemart_stock_left')} < {t.business.stock_left.info:g})"
                 " or vector(0)", "short", t.business.stock_left), w=6, h=5)
    lay.add(timeseries("Orders per minute by product", [target(q.per_minute("scalemart_orders_total", by="product"),
                                                               "{{product}}")], "short"))
    lay.add(timeseries("Revenue per hour", [target(f"sum(increase({q.sel('scalemart_revenue_total')}[1h]))",
                                                   "revenue/h")], "currencyUSD"))
    lay.add(BarGauge(title="Stock left by product", dataSource=DATASOURCE,
                     targets=[target(f"min by (product) ({q.sel('scalemart_stock_left')})", "{{product}}",
                                     instant=True)],
                     thresholds=steps(t.business.stock_left), displayMode="gradient", orientation="horizontal",
                     format="short", calc="lastNotNull"))
    lay.add(timeseries("Purchase attempts by result", [target(q.sum_rate("scalemart_purchase_attempts_total",
                                                                         by="result"), "{{result}}")], "ops"))
    lay.add(timeseries("Conversion by product", [target(conversion("product"), "{{product}}")], "percentunit"))
    lay.add(timeseries("Product views", [target(q.sum_rate("scalemart_product_views_total", by="product"),
                                                "{{product}}")], "ops"))
    return dashboard(TITLE, UID, lay, "Orders, revenue, stock levels and flash-sale conversion.", ["business"])
