"""Infrastructure Health: hosts, Redis, MongoDB (FerretDB), the order worker and the nginx load balancer."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules.thresholds import Thresholds
from dashboards import promql as q
from dashboards.common import Layout, dashboard, stat, table, target, timeseries

TITLE = "Infrastructure Health"
UID = "scalemart-infrastructure"


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Hosts")
    lay.add(timeseries("CPU usage by host", [target(q.cpu_usage(), "{{instance}}")], "percentunit",
                       t.hosts.cpu_ratio))
    lay.add(timeseries("Memory used by host", [target(q.memory_usage(), "{{instance}}")], "percentunit",
                       t.hosts.memory_ratio))
    lay.add(timeseries("Load (1 min)", [target(q.sel("node_load1"), "{{instance}}")], "short"))
    lay.add(timeseries("Disk space free", [target(
        q.ratio(q.sel("node_filesystem_avail_bytes", 'fstype!~"tmpfs|overlay|squashfs"'),
                q.sel("node_filesystem_size_bytes", 'fstype!~"tmpfs|overlay|squashfs"')),
        "{{instance}} {{mountpoint}}")], "percentunit"))
    lay.add(table("Scrape targets", q.sel("up"), "1 = Prometheus scrapes the target, 0 = it does not."), w=24)
    lay.row("Redis")
    lay.add(stat("Redis up", f"min({q.sel('redis_up')})", "short"), w=6, h=5)
    lay.add(timeseries("Redis memory", [target(q.sel("redis_memory_used_bytes"), "{{instance}}")], "bytes"), w=9)
    lay.add(timeseries("Redis commands", [target(q.sum_rate("redis_commands_processed_total", by="instance"),
                                                 "{{instance}}")], "ops"), w=9)
    lay.add(timeseries("Redis clients", [target(q.sel("redis_connected_clients"), "{{instance}}")], "short"))
    lay.add(timeseries("Redis evictions", [target(q.sum_rate("redis_evicted_keys_total", by="instance"),
                                                  "{{instance}}")], "ops"))
    lay.row("MongoDB")
    lay.add(stat("MongoDB up", f"min({q.sel('mongodb_up')})", "short"), w=6, h=5)
    # FerretDB serves the MongoDB wire protocol; the exporter only knows whether it answers, so
    # connections and operations come from FerretDB's own /debug/metrics (job `ferretdb`)
    lay.add(timeseries("MongoDB connections", [target(q.mongodb_open_connections(), "{{instance}}")], "short",
                       t.datastores.database_connections), w=9)
    lay.add(timeseries("MongoDB operations", [target(q.sum_rate("ferretdb_client_requests_total", by="command"),
                                                     "{{command}}")], "ops"), w=9)
    lay.row("Order worker")
    lay.add(timeseries("Queue length", [target(q.sel("scalemart_queue_length"), "{{instance}}")], "short",
                       t.worker.queue_length))
    lay.add(timeseries("Oldest queued order", [target(q.sel("scalemart_queue_oldest_message_age_seconds"),
                                                      "{{instance}}")], "s"))
    lay.add(timeseries("Orders persisted per minute", [target(q.per_minute("scalemart_worker_orders_persisted_total",
                                                                           by="instance"), "{{instance}}")], "short"))
    lay.add(timeseries("Worker heartbeat age", [target(q.age_seconds("scalemart_worker_heartbeat_timestamp_seconds",
                                                                     "instance"), "{{instance}}")], "s",
                       t.worker.heartbeat_age_seconds))
    lay.add(timeseries("Worker task p95", [target(
        f"histogram_quantile(0.95, sum by (le) ({q.rate('scalemart_worker_task_duration_seconds_bucket')}))",
        "p95")], "s"))
    lay.row("Load balancer (nginx)")
    lay.add(stat("nginx up", f"min({q.sel('nginx_up')})", "short"), w=6, h=5)
    lay.add(timeseries("nginx requests", [target(q.sum_rate("nginx_http_requests_total", by="instance"),
                                                 "{{instance}}")], "reqps"), w=9)
    lay.add(timeseries("nginx connections", [target(q.sel("nginx_connections_active"), "active {{instance}}", "A"),
                                             target(q.sel("nginx_connections_waiting"), "waiting {{instance}}",
                                                    "B")], "short"), w=9)
    return dashboard(TITLE, UID, lay, "Hosts, data stores, the order worker and the load balancer.",
                     ["infrastructure"])
