"""The exporters role's scalemart-host-limits: parsing of cgroup v1, cgroup v2 and a plain machine, on fake
/proc and /sys/fs/cgroup trees. The molecule exporters scenario checks it on a real container."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.roles.conftest import ROOT

SCRIPT = ROOT / "roles/exporters/files/scalemart-host-limits"
CID = "0123abcd"
MIB = 1024 * 1024
MEMINFO = (
    "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    5000000 kB\n"
    "Inactive(file):  2000000 kB\n"
)
# Four online CPUs; the first line in USER_HZ ticks: user nice system idle iowait irq softirq steal.
STAT = "cpu  1000 100 400 9000 500 50 50 0 0 0\ncpu0 1 0 0 0\ncpu1 1 0 0 0\ncpu2 1 0 0 0\ncpu3 1 0 0 0\nintr 0\n"


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("scalemart_host_limits", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


hl = load()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def proc(tmp_path: Path, cgroup: str) -> Path:
    write(tmp_path / "proc", {"1/cgroup": cgroup, "meminfo": MEMINFO, "stat": STAT})
    return tmp_path / "proc"


V1_CGROUP = (
    "".join(
        f"{i}:{c}:/docker/{CID}{s}\n"
        for i, c, s in [
            (9, "name=systemd", "/init.scope"),
            (4, "memory", "/init.scope"),
            (3, "cpuset", ""),
            (2, "cpuacct", ""),
            (1, "cpu", ""),
        ]
    )
    + f"0::/docker/{CID}/init.scope\n"
)


def v1_tree(root: Path, limit: str, quota: str, cpuset: str = "0-3") -> None:
    d = f"docker/{CID}"
    write(
        root,
        {
            f"memory/{d}/memory.limit_in_bytes": limit,
            f"memory/{d}/memory.usage_in_bytes": f"{100 * MIB}\n",
            f"memory/{d}/memory.stat": f"cache 1\ninactive_file 7\ntotal_inactive_file {30 * MIB}\n",
            # The child cgroup systemd made for itself has no limit: it must not be the one read.
            f"memory/{d}/init.scope/memory.limit_in_bytes": "9223372036854771712\n",
            f"cpu/{d}/cpu.cfs_quota_us": quota,
            f"cpu/{d}/cpu.cfs_period_us": "100000\n",
            f"cpuacct/{d}/cpuacct.usage": "12500000000\n",
            f"cpuset/{d}/cpuset.effective_cpus": cpuset,
        },
    )


def test_cgroup_v1_reads_the_containers_own_limit_not_init_scope(tmp_path: Path) -> None:
    v1_tree(tmp_path / "cgroup", f"{192 * MIB}\n", "150000\n")
    sample = hl.collect(proc(tmp_path, V1_CGROUP), tmp_path / "cgroup")
    assert sample == hl.Sample("cgroup-v1", 192 * MIB, 70 * MIB, 1.5, 12.5)


def test_cgroup_v1_without_a_quota_counts_the_cpuset(tmp_path: Path) -> None:
    v1_tree(tmp_path / "cgroup", f"{192 * MIB}\n", "-1\n", cpuset="0-1\n")
    assert hl.collect(proc(tmp_path, V1_CGROUP), tmp_path / "cgroup").cpu_limit_cores == 2.0


def test_cgroup_v1_without_a_memory_limit_is_the_machines_memory(tmp_path: Path) -> None:
    v1_tree(tmp_path / "cgroup", "9223372036854771712\n", "-1\n")
    sample = hl.collect(proc(tmp_path, V1_CGROUP), tmp_path / "cgroup")
    assert (sample.source, sample.memory_limit_bytes, sample.cpu_limit_cores) == ("cgroup-v1", 8000000 * 1024, 4.0)


def v2_tree(root: Path, path: str, memory_max: str, cpu_max: str) -> None:
    path = path or "."  # the cgroup at the mount's root
    write(
        root,
        {
            "cgroup.controllers": "cpuset cpu io memory pids\n",
            f"{path}/memory.max": memory_max,
            f"{path}/memory.current": f"{300 * MIB}\n",
            f"{path}/memory.stat": f"anon 1\nfile 2\ninactive_file {100 * MIB}\nactive_file 3\n",
            f"{path}/cpu.max": cpu_max,
            f"{path}/cpu.stat": "usage_usec 4250000\nuser_usec 1\nsystem_usec 2\n",
            f"{path}/cpuset.cpus.effective": "0-3\n",
        },
    )


def test_cgroup_v2_reads_the_containers_cgroup(tmp_path: Path) -> None:
    v2_tree(tmp_path / "cgroup", f"docker/{CID}", f"{512 * MIB}\n", "200000 100000\n")
    sample = hl.collect(proc(tmp_path, f"0::/docker/{CID}/init.scope\n"), tmp_path / "cgroup")
    assert sample == hl.Sample("cgroup-v2", 512 * MIB, 200 * MIB, 2.0, 4.25)


def test_cgroup_v2_in_its_own_namespace_and_without_limits(tmp_path: Path) -> None:
    # A private cgroup namespace: PID 1 sees its cgroup as "/", mounted at /sys/fs/cgroup.
    v2_tree(tmp_path / "cgroup", "", "max\n", "max 100000\n")
    sample = hl.collect(proc(tmp_path, "0::/\n"), tmp_path / "cgroup")
    assert (sample.source, sample.memory_limit_bytes, sample.cpu_limit_cores) == ("cgroup-v2", 8000000 * 1024, 4.0)


def test_a_vm_on_cgroup_v2_is_the_machine(tmp_path: Path) -> None:
    # systemd's init.scope on a VM: the root cgroup has no memory.max, init.scope does (unlimited).
    root = tmp_path / "cgroup"
    v2_tree(root, "init.scope", "max\n", "max 100000\n")
    sample = hl.collect(proc(tmp_path, "0::/init.scope\n"), root)
    assert sample.source == "machine"


def test_the_machine_has_memtotal_and_its_cpus(tmp_path: Path) -> None:
    sample = hl.collect(proc(tmp_path, "0::/init.scope\n"), tmp_path / "no-cgroup-mounted")
    ticks = hl.os.sysconf("SC_CLK_TCK")
    # working set: MemTotal - MemFree - Inactive(file); busy ticks: all but idle and iowait
    assert sample == hl.Sample("machine", 8000000 * 1024, 5000000 * 1024, 4.0, 1600 / ticks)


def test_a_vm_on_cgroup_v1_is_the_machine(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(
        root,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/memory.usage_in_bytes": "1\n",
            "memory/memory.stat": "total_inactive_file 0\n",
            "cpu/cpu.cfs_quota_us": "-1\n",
            "cpu/cpu.cfs_period_us": "100000\n",
            "cpuacct/cpuacct.usage": "1\n",
        },
    )
    assert hl.collect(proc(tmp_path, "4:memory:/init.scope\n1:cpu,cpuacct:/init.scope\n"), root).source == "machine"


def test_the_textfile_is_written_whole_and_readable(tmp_path: Path) -> None:
    v1_tree(tmp_path / "cgroup", f"{192 * MIB}\n", "-1\n")
    out = tmp_path / "textfile" / "scalemart_host.prom"
    out.parent.mkdir()
    out.write_text("old\n")
    assert (
        hl.main(
            ["--output", str(out), "--proc", str(proc(tmp_path, V1_CGROUP)), "--cgroup-root", str(tmp_path / "cgroup")]
        )
        == 0
    )
    text = out.read_text()
    assert f"scalemart_host_memory_limit_bytes {192 * MIB}\n" in text
    assert "# TYPE scalemart_host_cpu_usage_seconds_total counter\n" in text
    assert 'scalemart_host_limits_source{source="cgroup-v1"} 1\n' in text
    assert [p.name for p in out.parent.iterdir()] == [out.name], "a temporary file was left behind"
    assert out.stat().st_mode & 0o777 == 0o644


def test_a_missing_textfile_folder_fails_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1_tree(tmp_path / "cgroup", f"{192 * MIB}\n", "-1\n")
    assert (
        hl.main(
            [
                "--output",
                str(tmp_path / "absent/scalemart_host.prom"),
                "--proc",
                str(proc(tmp_path, V1_CGROUP)),
                "--cgroup-root",
                str(tmp_path / "cgroup"),
            ]
        )
        == 1
    )
    assert "apply it again" in capsys.readouterr().err


def test_a_missing_file_fails_and_keeps_the_previous_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1_tree(tmp_path / "cgroup", f"{192 * MIB}\n", "-1\n")
    (tmp_path / "cgroup" / f"cpuacct/docker/{CID}/cpuacct.usage").unlink()
    out = tmp_path / "scalemart_host.prom"
    out.write_text("old\n")
    assert (
        hl.main(
            ["--output", str(out), "--proc", str(proc(tmp_path, V1_CGROUP)), "--cgroup-root", str(tmp_path / "cgroup")]
        )
        == 1
    )
    assert out.read_text() == "old\n"
    assert "cpuacct.usage" in capsys.readouterr().err
