"""The textfile node_exporter reads: written whole by prometheus_client, readable by another user,
counters with the totals of the state file and nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backups import metrics

STATE = {
    "last_success": {
        "finished": 1732380000.25,
        "duration_seconds": 35.5,
        "archive_bytes": 3_700_000,
        "sizes": {"redis": 1234, "mongodb": 99_999, "config": 10},
        "orders": 100_000,
    },
    "last_run": {"finished": 1732380001.5, "ok": True},
    "counters": {"backup_runs": 5, "backup_failures": 1},
}


def _families(path: Path) -> dict[str, tuple[str, str, dict[str, float]]]:
    return {
        f.name: (f.type, f.documentation, {s.name + str(sorted(s.labels.items())): s.value for s in f.samples})
        for f in text_string_to_metric_families(path.read_text())
    }


def test_the_textfile_is_whole_and_readable_by_node_exporter_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "scalemart_backup.prom"
    path.write_text("# an older run\n")
    umask = os.umask(0o077)
    try:
        metrics.write_textfile(path, metrics.render(STATE, archives=2, archive_bytes=7_400_000))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == [path.name], "no temporary file is left beside it"
    families = _families(path)
    assert families["scalemart_backup_last_success_timestamp_seconds"][2] == {
        f"scalemart_backup_last_success_timestamp_seconds[('kind', '{k}')]": 1732380000.25 for k in metrics.KINDS
    }
    assert (
        families["scalemart_backup_last_size_bytes"][2]["scalemart_backup_last_size_bytes[('kind', 'archive')]"]
        == 3_700_000
    )
    assert families["scalemart_backup_runs"] == ("counter", "Backup runs.", {"scalemart_backup_runs_total[]": 5})
    assert families["scalemart_restore_failures"][2] == {"scalemart_restore_failures_total[]": 0}
    assert families["scalemart_backup_archives_bytes"][2] == {"scalemart_backup_archives_bytes[]": 7_400_000}
    assert "scalemart_restore_last_success" not in families, "no restore yet: no restore metrics, not a 0"
    assert not [n for n in path.read_text().split() if n.endswith("_created")], "counters carry no _created series"


def test_no_textfile_directory_warns_and_writes_nothing(tmp_path: Path, capsys) -> None:
    metrics.write_textfile(tmp_path / "missing" / "scalemart_backup.prom", metrics.render({}, 0, 0))
    assert "textfile_path" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
