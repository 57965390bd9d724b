"""`scalemart serve | worker | reconcile | token issue`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from scalemart.settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.env_file)


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Multiprocess metrics: every uvicorn worker writes its samples to files in this dir.
    # It must be set before prometheus_client is imported and emptied at each start.
    metrics_dir = Path(settings.metrics_dir or tempfile.mkdtemp(prefix="scalemart-metrics-"))
    if metrics_dir.exists():
        for f in metrics_dir.glob("*.db"):
            f.unlink()
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    import uvicorn

    workers = args.workers or settings.workers
    try:
        uvicorn.run(
            "scalemart.api:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=workers,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            log_level=settings.log_level,
            access_log=False,
            loop="uvloop",
            http="httptools",
            backlog=4096,
            timeout_keep_alive=30,
        )
    finally:
        if not settings.metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # The worker is a single process: keep prometheus-client out of multiprocess mode even when
    # the service environment file shares the API's PROMETHEUS_MULTIPROC_DIR.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from scalemart.worker import Worker, WorkerMetrics

    wm = WorkerMetrics()
    port = settings.worker_metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        wm.serve(settings.worker_metrics_host, port)
    w = Worker(settings, wm)
    if args.drain:
        w.ensure_group()
        while not w.drained():
            w.step(block_ms=200)
        return 0
    w.run()
    return 0


def reconcile(args: argparse.Namespace) -> int:
    from scalemart.reconcile import collect, report

    text, clean = report(collect(_settings(args)), args.require_drained)
    print(text)
    return 0 if clean else 1


def token_issue(args: argparse.Namespace) -> int:
    from scalemart import tokens

    try:
        ttl = tokens.parse_ttl(args.ttl)
        issued = tokens.issue(_settings(args).buyer_token_key.get_secret_value(), args.user, ttl)
    except ValueError as exc:
        print(f"scalemart token issue: {exc}", file=sys.stderr)
        return 2
    print(issued.token)
    print(f"token for {issued.user_id}, valid {ttl} s (until unix time {issued.expires_at})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scalemart", description="ScaleMart flash-sale API")
    parser.add_argument("--env-file", help="read SCALEMART_* settings from this file as well as the environment")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the HTTP API (uvicorn, several worker processes)")
    p.add_argument("--workers", type=int, help="uvicorn worker processes (default SCALEMART_WORKERS)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=serve)
    p = sub.add_parser("worker", help="persist queued orders to MongoDB; metrics on SCALEMART_WORKER_METRICS_PORT")
    p.add_argument("--metrics-port", type=int, help="0 disables the metrics listener")
    p.add_argument("--drain", action="store_true", help="exit once the queue is empty")
    p.set_defaults(func=worker)
    p = sub.add_parser("reconcile", help="check stock taken == units ordered per product; exit 0 iff clean")
    p.add_argument("--require-drained", action="store_true", help="also fail while orders are still queued")
    p.set_defaults(func=reconcile)
    p = sub.add_parser("token", help="buyer tokens")
    token_sub = p.add_subparsers(dest="token_command", required=True)
    p = token_sub.add_parser("issue", help="print a buyer token (JWT) for a user, for the shop's login service")
    p.add_argument("--user", required=True, help="the buyer's user id (the token's sub)")
    p.add_argument("--ttl", default="15m", help="how long it is valid: 15m, 2h, 900 (seconds); up to 30d")
    p.set_defaults(func=token_issue)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"scalemart: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
