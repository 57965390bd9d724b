"""Infrastructure Health: hosts, Redis, MongoDB (FerretDB), the order worker and the nginx load balancer."""

from __future__ import annotations

from grafanalib.core import Dashboard

from alert_rules import signals as s
from alert_rules.thresholds import Thresholds
from dashboards.common import Layout, dashboard, stat, table, target, timeseries, watch

TITLE = "Infrastructure Health"
UID = "scalemart-infrastructure"
q = s.PANELS


def build(t: Thresholds) -> Dashboard:
    lay = Layout()
    lay.row("Hosts")
    lay.add(watch("CPU usage by host", s.CPU_USAGE, t, "percentunit", "{{instance}}"))
    lay.add(watch("Memory used by host", s.MEMORY_USAGE, t, "percentunit", "{{instance}}"))
    lay.add(timeseries("Load (1 min)", [target(q.sel("node_load1"), "{{instance}}")], "short"))
    lay.add(
        watch(
            "Disk used by mount",
            s.DISK_USED,
            t,
            "percentunit",
            "{{instance}} {{mountpoint}}",
            "The data volumes included; HostDiskFillingUp warns a day ahead at the last 6 h's rate.",
        )
    )
    lay.add(table("Scrape targets", s.TARGET_UP.panel(), "1 = Prometheus scrapes the target, 0 = it does not."), w=24)
    lay.row("Redis")
    lay.add(stat("Redis up", f"min({s.REDIS_UP.panel()})", "short"), w=6, h=5)
    lay.add(
        watch(
            "Redis memory against maxmemory",
            s.REDIS_MEMORY,
            t,
            "percentunit",
            "{{instance}}",
            "With noeviction, purchases fail once Redis is full.",
        ),
        w=9,
    )
    lay.add(
        timeseries(
            "Redis commands",
            [target(q.sum_rate("redis_commands_processed_total", by="instance"), "{{instance}}")],
            "ops",
        ),
        w=9,
    )
    lay.add(timeseries("Redis clients", [target(q.sel("redis_connected_clients"), "{{instance}}")], "short"))
    lay.add(
        timeseries(
            "Redis evictions", [target(q.sum_rate("redis_evicted_keys_total", by="instance"), "{{instance}}")], "ops"
        )
    )
    lay.row("MongoDB")
    lay.add(stat("MongoDB up", f"min({s.MONGODB_UP.panel()})", "short"), w=6, h=5)
    # FerretDB serves the MongoDB wire protocol; the exporter only knows whether it answers, so
    # connections and operations come from FerretDB's own /debug/metrics (job `ferretdb`)
    lay.add(watch("MongoDB connections", s.OPEN_CONNECTIONS, t, "short", "{{instance}}"), w=9)
    lay.add(
        timeseries(
            "MongoDB operations",
            [target(q.sum_rate("ferretdb_client_requests_total", by="command"), "{{command}}")],
            "ops",
        ),
        w=9,
    )
    lay.row("Order worker")
    lay.add(watch("Queue length", s.QUEUE_LENGTH, t, "short", "{{env}}"))
    lay.add(
        timeseries(
            "Oldest queued order", [target(q.sel("scalemart_queue_oldest_message_age_seconds"), "{{instance}}")], "s"
        )
    )
    lay.add(
        timeseries(
            "Orders persisted per minute",
            [target(q.per_minute("scalemart_worker_orders_persisted_total", by="instance"), "{{instance}}")],
            "short",
        )
    )
    lay.add(watch("Worker heartbeat age", s.HEARTBEAT_AGE, t, "s", "{{instance}}"))
    lay.add(
        timeseries(
            "Worker task p95", [target(q.quantile(0.95, "scalemart_worker_task_duration_seconds_bucket"), "p95")], "s"
        )
    )
    lay.row("Monitoring")
    lay.add(
        watch(
            "Prometheus storage against its retention size",
            s.TSDB_RETENTION,
            t,
            "percentunit",
            "{{instance}}",
            "At the limit the oldest data goes before the retention time.",
        ),
        w=24,
    )
    lay.row("Load balancer (nginx)")
    lay.add(stat("nginx up", f"min({q.sel('nginx_up')})", "short"), w=6, h=5)
    lay.add(
        timeseries(
            "nginx requests", [target(q.sum_rate("nginx_http_requests_total", by="instance"), "{{instance}}")], "reqps"
        ),
        w=9,
    )
    lay.add(
        timeseries(
            "nginx connections",
            [
                target(q.sel("nginx_connections_active"), "active {{instance}}", "A"),
                target(q.sel("nginx_connections_waiting"), "waiting {{instance}}", "B"),
            ],
            "short",
        ),
        w=9,
    )
    return dashboard(TITLE, UID, lay, "Hosts, data stores, the order worker and the load balancer.", ["infrastructure"])
