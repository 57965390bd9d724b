"""What the `ScaleMartBackupTooOld` alert and the dashboards read: a node_exporter textfile.

Counters must survive between runs (each run is a new process), so they live in a small state
file in the backup directory; the textfile is rewritten from it after every run, atomically
(node_exporter may read it at any moment). No `env` label: Prometheus adds it per target.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

STATE = ".backups-state.json"
KINDS = ("mongodb", "redis", "config")


def load_state(backup_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((backup_dir / STATE).read_text()))
    except (OSError, ValueError):
        return {}


def save_state(backup_dir: Path, state: dict[str, Any]) -> None:
    _atomic_write(backup_dir / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def bump(state: dict[str, Any], counter: str, by: int = 1) -> None:
    state.setdefault("counters", {})
    state["counters"][counter] = int(state["counters"].get(counter, 0)) + by


def render(state: dict[str, Any], archives: int, archive_bytes: int) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        if not samples:
            return
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    last = state.get("last_success") or {}
    if last:
        metric("scalemart_backup_last_success_timestamp_seconds", "gauge",
               "Unix time the last successful backup of each kind finished.",
               [(f'{{kind="{k}"}}', float(last["finished"])) for k in KINDS])
        metric("scalemart_backup_last_duration_seconds", "gauge", "Duration of the last successful backup.",
               [("", float(last["duration_seconds"]))])
        metric("scalemart_backup_last_size_bytes", "gauge",
               "Size of the last successful backup: each kind uncompressed, and the whole archive.",
               [(f'{{kind="{k}"}}', float(v)) for k, v in sorted(last.get("sizes", {}).items())]
               + [('{kind="archive"}', float(last["archive_bytes"]))])
        metric("scalemart_backup_last_orders", "gauge", "Orders in the last successful backup.",
               [("", float(last.get("orders", 0)))])
    run = state.get("last_run") or {}
    if run:
        metric("scalemart_backup_last_run_timestamp_seconds", "gauge", "Unix time the last backup run finished.",
               [("", float(run["finished"]))])
        metric("scalemart_backup_last_run_success", "gauge", "1 if the last backup run succeeded, else 0.",
               [("", 1.0 if run["ok"] else 0.0)])
    offsite = state.get("offsite_last_success")
    if offsite:
        metric("scalemart_backup_offsite_last_success_timestamp_seconds", "gauge",
               "Unix time the last off-site copy succeeded.", [("", float(offsite))])
    restore = state.get("last_restore") or {}
    if restore:
        metric("scalemart_restore_last_timestamp_seconds", "gauge", "Unix time the last restore finished.",
               [("", float(restore["finished"]))])
        metric("scalemart_restore_last_success", "gauge",
               "1 if the last restore succeeded and matched its manifest, else 0.",
               [("", 1.0 if restore["ok"] else 0.0)])
        metric("scalemart_restore_last_duration_seconds", "gauge", "Duration of the last restore.",
               [("", float(restore["duration_seconds"]))])
    counters = state.get("counters", {})
    for name, help_ in (("backup_runs", "Backup runs."), ("backup_failures", "Backup runs that failed."),
                        ("backup_pruned_archives", "Archives deleted by retention."),
                        ("backup_offsite_uploads", "Off-site copies attempted."),
                        ("backup_offsite_failures", "Off-site copies that failed."),
                        ("restore_runs", "Restore runs."), ("restore_failures", "Restore runs that failed.")):
        metric(f"scalemart_{name}_total", "counter", help_, [("", float(counters.get(name, 0)))])
    metric("scalemart_backup_archives", "gauge", "Archives of this environment on the data host.",
           [("", float(archives))])
    metric("scalemart_backup_archives_bytes", "gauge", "Bytes used by the archives of this environment.",
           [("", float(archive_bytes))])
    return "\n".join(lines) + "\n"


def write_textfile(path: Path | None, text: str) -> None:
    if path is None:
        return
    if not path.parent.is_dir():
        print(f"warning: textfile_path: {path.parent} does not exist, so node_exporter cannot export the backup "
              "metrics (BackupTooOld will fire); install the exporters role or fix textfile_path", file=sys.stderr)
        return
    _atomic_write(path, text, 0o644)
