"""What the `ScaleMartBackupTooOld` alert and the dashboards read: a node_exporter textfile.

Counters must survive between runs (each run is a new process), so they live in a small state
file in the backup directory; after every run the textfile is rewritten from it with
prometheus_client's write_to_textfile, atomically (node_exporter may read it at any moment).
No `env` label: Prometheus adds it per target.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

STATE = ".backups-state.json"
KINDS = ("mongodb", "redis", "config")


def load_state(backup_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((backup_dir / STATE).read_text()))
    except (OSError, ValueError):
        return {}


def save_state(backup_dir: Path, state: dict[str, Any]) -> None:
    _atomic_write(backup_dir / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def bump(state: dict[str, Any], counter: str, by: int = 1) -> None:
    state.setdefault("counters", {})
    state["counters"][counter] = int(state["counters"].get(counter, 0)) + by


# The run counters: (name without scalemart_ and _total, help).
COUNTERS = (
    ("backup_runs", "Backup runs."),
    ("backup_failures", "Backup runs that failed."),
    ("backup_pruned_archives", "Archives deleted by retention."),
    ("backup_offsite_uploads", "Off-site copies attempted."),
    ("backup_offsite_failures", "Off-site copies that failed."),
    ("restore_runs", "Restore runs."),
    ("restore_failures", "Restore runs that failed."),
)


class _Counters(Collector):
    """The run counters with the totals of the state file. Not Counter objects: those start at 0 in
    every process (each run is one) and add a `_created` series that would say they reset each run."""

    def __init__(self, counts: dict[str, Any]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        for name, help_ in COUNTERS:
            yield CounterMetricFamily(f"scalemart_{name}", help_, value=float(self.counts.get(name, 0)))


def _gauge(reg: CollectorRegistry, name: str, help_: str, value: float | dict[str, float]) -> None:
    """One gauge; a dict of values is one sample per `kind`."""
    if isinstance(value, dict):
        gauge = Gauge(name, help_, ["kind"], registry=reg)
        for kind, v in value.items():
            gauge.labels(kind=kind).set(v)
    else:
        Gauge(name, help_, registry=reg).set(value)


def render(state: dict[str, Any], archives: int, archive_bytes: int) -> CollectorRegistry:
    """The metrics of `state` (see load_state) and of the archives on disk; a family without data yet
    (no successful backup, no restore) is left out rather than exported as 0."""
    reg = CollectorRegistry()
    last = state.get("last_success") or {}
    if last:
        _gauge(
            reg,
            "scalemart_backup_last_success_timestamp_seconds",
            "Unix time the last successful backup of each kind finished.",
            dict.fromkeys(KINDS, float(last["finished"])),
        )
        _gauge(
            reg,
            "scalemart_backup_last_duration_seconds",
            "Duration of the last successful backup.",
            float(last["duration_seconds"]),
        )
        _gauge(
            reg,
            "scalemart_backup_last_size_bytes",
            "Size of the last successful backup: each kind uncompressed, and the whole archive.",
            {
                **{k: float(v) for k, v in sorted(last.get("sizes", {}).items())},
                "archive": float(last["archive_bytes"]),
            },
        )
        _gauge(
            reg, "scalemart_backup_last_orders", "Orders in the last successful backup.", float(last.get("orders", 0))
        )
    run = state.get("last_run") or {}
    if run:
        _gauge(
            reg,
            "scalemart_backup_last_run_timestamp_seconds",
            "Unix time the last backup run finished.",
            float(run["finished"]),
        )
        _gauge(
            reg,
            "scalemart_backup_last_run_success",
            "1 if the last backup run succeeded, else 0.",
            1.0 if run["ok"] else 0.0,
        )
    offsite = state.get("offsite_last_success")
    if offsite:
        _gauge(
            reg,
            "scalemart_backup_offsite_last_success_timestamp_seconds",
            "Unix time the last off-site copy succeeded.",
            float(offsite),
        )
    restore = state.get("last_restore") or {}
    if restore:
        _gauge(
            reg,
            "scalemart_restore_last_timestamp_seconds",
            "Unix time the last restore finished.",
            float(restore["finished"]),
        )
        _gauge(
            reg,
            "scalemart_restore_last_success",
            "1 if the last restore succeeded and matched its manifest, else 0.",
            1.0 if restore["ok"] else 0.0,
        )
        _gauge(
            reg,
            "scalemart_restore_last_duration_seconds",
            "Duration of the last restore.",
            float(restore["duration_seconds"]),
        )
    reg.register(_Counters(state.get("counters", {})))
    _gauge(reg, "scalemart_backup_archives", "Archives of this environment on the data host.", float(archives))
    _gauge(
        reg, "scalemart_backup_archives_bytes", "Bytes used by the archives of this environment.", float(archive_bytes)
    )
    return reg


def write_textfile(path: Path | None, reg: CollectorRegistry) -> None:
    if path is None:
        return
    if not path.parent.is_dir():
        print(
            f"warning: textfile_path: {path.parent} does not exist, so node_exporter cannot export the backup "
            "metrics (BackupTooOld will fire); install the exporters role or fix textfile_path",
            file=sys.stderr,
        )
        return
    # write_to_textfile creates the file with open(): node_exporter, another user, must be able to read it
    # whatever umask this process was started with.
    umask = os.umask(0o022)
    try:
        write_to_textfile(str(path), reg)
    finally:
        os.umask(umask)
