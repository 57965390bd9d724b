"""Recorded series for the shop's analytics console (app/scalemart/analytics): what it shows of each host and
datastore, recorded from the same signals the alerts compare with their thresholds.

The console reads these names and nothing of the exporters' own, so a figure on its page and the alert
on the same quantity are one expression (signals.py) evaluated once per interval. The names follow the
`level:metric:operation` convention of Prometheus' recording rules; the app's tests load this group into
a real Prometheus and check each figure against known data.
"""

from __future__ import annotations

from typing import Any

from alert_rules import signals as s

GROUP = "scalemart-analytics"

# record name -> PromQL, every series by (env, instance)
RECORDS: dict[str, str] = {
    "instance:scalemart_host_cpu_usage:ratio": s.CPU_USAGE.expr(),
    "instance:scalemart_host_memory_usage:ratio": s.MEMORY_USAGE.expr(),
    # the fullest real mount of each host
    "instance:scalemart_host_disk_used:max_ratio": f"max by (env, instance) (\n{s.DISK_USED.expr()}\n)",
    "instance:scalemart_redis_memory_used:bytes": "max by (env, instance) (redis_memory_used_bytes)",
    "instance:scalemart_redis_memory_max:bytes": "max by (env, instance) (redis_memory_max_bytes)",
    "instance:scalemart_redis_memory:ratio": s.REDIS_MEMORY.expr(),
    "instance:scalemart_database_connections:count": s.OPEN_CONNECTIONS.expr(),
}


def rule_group() -> dict[str, Any]:
    return {"groups": [{"name": GROUP, "rules": [{"record": name, "expr": expr} for name, expr in RECORDS.items()]}]}
