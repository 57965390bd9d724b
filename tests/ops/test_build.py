"""The build phase (ops/build.py): every artifact once, nothing rebuilt when no input changed, and a
failed build never replaces a good artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import build
from ops.wheels import Bundle

pytestmark = pytest.mark.docker


def test_second_build_rebuilds_nothing_and_says_so(
    base_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [a.name for a in build.artifacts(base_image)]
    assert {"rules", "dashboards", "alerting", "app", "tools"} <= set(names)
    assert build.build("pytest", base_image, root=tmp_path) == names
    assert list((tmp_path / "rules" / "rules").glob("*.yml")), "no rule files"
    assert list((tmp_path / "dashboards" / "perses").glob("dashboard-*.json")), "no Perses dashboards"
    assert (tmp_path / "alerting" / "alert_rules" / "alertmanager.py").is_file()
    bundle = Bundle.read(tmp_path / "app")
    assert (tmp_path / "app" / bundle.tarball).is_file() and bundle.name == "scalemart"
    assert bundle.python == build.host_python(base_image)
    assert (tmp_path / "tools" / "bin" / "ferretdb").resolve().is_file()
    capsys.readouterr()

    assert build.build("pytest", base_image, root=tmp_path) == []
    out = capsys.readouterr().out
    assert "nothing rebuilt: every input is unchanged" in out
    assert out.count("unchanged (inputs ") == len(names), out


def _artifact(inputs: list[Path], make) -> build.Artifact:  # type: ignore[no-untyped-def]
    return build.Artifact("thing", lambda: inputs, make)


def test_changed_input_rebuilds_and_a_failed_build_keeps_the_previous_artifact(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("one")
    root = tmp_path / "artifacts"

    def copy(out: Path) -> None:
        (out / "content").write_text(source.read_text())

    assert build.build_one(_artifact([source], copy), root)
    assert not build.build_one(_artifact([source], copy), root), "unchanged inputs rebuilt"
    source.write_text("two")
    assert build.build_one(_artifact([source], copy), root)
    assert (root / "thing" / "content").read_text() == "two"

    def broken(out: Path) -> None:
        (out / "content").write_text("half")
        raise build.BuildError("thing: the generator refused its input")

    source.write_text("three")
    with pytest.raises(build.BuildError, match="refused its input"):
        build.build_one(_artifact([source], broken), root)
    assert (root / "thing" / "content").read_text() == "two", "a failed build replaced the good artifact"
    assert sorted(p.name for p in root.iterdir()) == ["thing"], "the scratch folder was left behind"
    # The failed inputs were never recorded: the next build tries again.
    assert build.build_one(_artifact([source], copy), root)


def test_missing_tools_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TOOLS_BIN", tmp_path / "no-tools")
    with pytest.raises(build.BuildError, match=r"missing on the control machine: .*ferretdb.*run `make bootstrap`"):
        build.tool_links(tmp_path / "out")


def test_host_python_can_be_named_for_hosts_without_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build.HOST_PYTHON_VAR, "3.11.9")
    assert build.host_python("no-such-image:latest") == "3.11.9"


def test_unknown_image_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(build.HOST_PYTHON_VAR, raising=False)
    with pytest.raises(build.BuildError, match=r"no-such-image:latest is not on this Docker engine: run `make boot"):
        build.host_python("no-such-image:latest")


def test_release_json_names_the_bundle(base_image: str, tmp_path: Path) -> None:
    build.build_one(next(a for a in build.artifacts(base_image) if a.name == "app"), tmp_path)
    data = json.loads((tmp_path / "app" / "release.json").read_text())
    assert set(data) == {"name", "version", "release", "tarball", "pip_wheel", "python"}
    assert data["tarball"].startswith(f"scalemart-{data['version']}-") and data["release"] in data["tarball"]
