"""PromQL shared by the dashboards. Every selector carries the `env` variable, so one Grafana
serves dev, staging and production; windows use Grafana's $__rate_interval."""

from __future__ import annotations

from alert_rules.rules import ferretdb_open_connections

ENV = 'env=~"$env"'
WINDOW = "$__rate_interval"


def sel(metric: str, matchers: str = "") -> str:
    """metric{env=~"$env",<matchers>}"""
    inner = ENV if not matchers else f"{ENV},{matchers}"
    return f"{metric}{{{inner}}}"


def rate(metric: str, matchers: str = "", window: str = WINDOW) -> str:
    return f"rate({sel(metric, matchers)}[{window}])"


def sum_rate(metric: str, matchers: str = "", by: str = "", window: str = WINDOW) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(metric, matchers, window)})"


def per_minute(metric: str, matchers: str = "", by: str = "") -> str:
    return f"{sum_rate(metric, matchers, by)} * 60"


def ratio(numerator: str, denominator: str) -> str:
    return f"({numerator})\n/ ({denominator})"


def error_ratio(by: str = "") -> str:
    # 1 - ok/all rather than 5xx/all: with no 5xx series yet the panel shows 0, not "No data"
    return "1 - " + ratio(sum_rate("scalemart_http_requests_total", 'status!~"5.."', by),
                          sum_rate("scalemart_http_requests_total", "", by))


def latency_quantile(q: float, by: str = "") -> str:
    grouping = ", ".join(p for p in (by, "le") if p)
    return (f"histogram_quantile({q}, sum by ({grouping}) "
            f"({rate('scalemart_http_request_duration_seconds_bucket')}))")


def cache_hit_ratio() -> str:
    hits = sum_rate("scalemart_cache_hits_total")
    misses = sum_rate("scalemart_cache_misses_total")
    return f"{hits}\n/ ({hits} + {misses})"


def cpu_usage(by: str = "instance") -> str:
    idle = rate("node_cpu_seconds_total", 'mode="idle"')
    return f"1 - avg by ({by}) ({idle})"


def memory_usage() -> str:
    return f"1 - {sel('node_memory_MemAvailable_bytes')} / {sel('node_memory_MemTotal_bytes')}"


def age_seconds(timestamp_metric: str, by: str) -> str:
    return f"time() - max by ({by}) ({sel(timestamp_metric)})"


def mongodb_open_connections() -> str:
    """FerretDB's open client connections per instance, the same expression MongoDBTooManyConnections watches."""
    return ferretdb_open_connections(ENV)
