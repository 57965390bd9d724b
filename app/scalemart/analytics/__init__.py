"""The analytics console: the one-screen overview a shop admin keeps open during a sale.

- `api`: the JSON API (`/analytics/api/...`) other tools call, figures computed in `figures` from the
  sources in `sources` (Prometheus, Alertmanager) and the shop's own counters in Redis;
- `page`: the server-rendered page (`/analytics/dashboard`), its login (`session`) and sparklines.
"""
