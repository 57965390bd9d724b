"""The CI pipeline (ops/ci.py, .github/workflows): actionlint on the workflows, the stage table and its skip lines,
the secret scan against the reviewed baseline, and the offline dependency audit. Real tools throughout: the
actionlint binary of `make bootstrap`, ruff, detect-secrets, and the app bundle the build phase makes."""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ops import ci
from toolchain.common import ROOT, TOOLS_BIN, tool_env

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def offline_env(**extra: str) -> dict[str, str]:
    """This machine as `make ci` sees it: not GitHub Actions, whatever CI says (.ci/run sets CI=true)."""
    env = {k: v for k, v in tool_env().items() if k not in {"GITHUB_ACTIONS", ci.VULN_DATA_VAR}}
    return {**env, **extra}


def run_ci(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.ci", *args],
        cwd=ROOT,
        env=offline_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def row(output: str, stage: str) -> list[str]:
    """The table's row of `stage`, split into its columns."""
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [stage]]
    assert rows, f"no row for {stage} in:\n{output}"
    return rows[-1]


# --- workflows --------------------------------------------------------------------------------------------------


def test_the_workflows_exist_and_call_make_ci_per_stage() -> None:
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "release.yml"]
    text = "\n".join(w.read_text() for w in WORKFLOWS)
    named = {
        s
        for line in text.splitlines()
        if "make ci STAGES=" in line
        for s in line.split("STAGES=")[1].split()[0].split(",")
    }
    assert named == {"lint", "unit", "molecule", "e2e", "security", "images", "push", "deploy"}
    assert named <= {s.name for s in ci.STAGES} | {s.group for s in ci.STAGES}


def test_actionlint_is_clean_on_the_workflows() -> None:
    proc = subprocess.run(
        [str(TOOLS_BIN / "actionlint"), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.nonexistent_context_key }}\n        shell: bassh\n"
    )
    proc = subprocess.run([str(TOOLS_BIN / "actionlint"), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout
    assert "bassh" in proc.stdout


def test_the_molecule_matrix_is_the_scenarios() -> None:
    proc = run_ci("--list", "molecule")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


# --- the stage script -------------------------------------------------------------------------------------------


def test_online_stages_skip_with_one_line_each_and_the_run_passes() -> None:
    proc = run_ci("--stage", "image-scan,push", "--stage", "deploy", CI="true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ["image-scan", "push", "deploy"]:
        lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{stage}: skipped: ")]
        assert len(lines) == 1, proc.stdout
        assert row(proc.stdout, stage)[1] == "skipped"
    assert proc.stdout.splitlines()[-4].split() == ["stage", "status", "time", "note"]


def test_an_unknown_stage_is_refused_naming_the_stages() -> None:
    proc = run_ci("--stage", "lnt")
    assert proc.returncode != 0
    assert "no stage lnt" in proc.stderr and "lint" in proc.stderr


def _format_stage(path: Path) -> ci.Stage:
    return ci.Stage(
        f"format-{path.stem}",
        lambda _ctx: ci.sh(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", path),
        "ruff format --check",
    )


def test_a_failing_stage_fails_the_run_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text('x = {"a": 1}\n')
    bad.write_text("x = {  'a':1 }\n")
    monkeypatch.setattr(ci, "STAGES", [_format_stage(bad), _format_stage(good)])
    assert ci.main([]) == 1
    out = capsys.readouterr().out
    assert row(out, "format-bad")[1] == "failed" and "exited 1" in out
    assert row(out, "format-good")[1] == "passed"
    assert row(out, "format-good")[3] == "s", "durations are printed in seconds"


# --- security ---------------------------------------------------------------------------------------------------


def test_the_tree_passes_the_secret_scan_with_its_reviewed_baseline() -> None:
    baseline = json.loads(ci.BASELINE.read_text())
    unreviewed = [(f, r["line_number"]) for f, rs in baseline["results"].items() for r in rs if "is_secret" not in r]
    assert not unreviewed, f"baseline entries nobody reviewed (detect-secrets audit .secrets.baseline): {unreviewed}"
    assert ci.secret_scan(ROOT, ci.BASELINE) == []


def test_a_planted_secret_is_caught(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    (tmp_path / "app.py").write_text("print('hello')\n")
    # Made here, at test time: a key that looks like an AWS access key, in a deploy file.
    key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    (tmp_path / "deploy.env").write_text(f"REGION=eu-west-1\nAWS_ACCESS_KEY_ID={key}\n")
    findings = ci.secret_scan(tmp_path, ci.BASELINE)
    assert findings == ["deploy.env:2: AWS Access Key"], findings


def test_the_audit_without_data_is_skipped_never_passed() -> None:
    proc = run_ci("--stage", "audit", CI="true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit: skipped: no vulnerability data" in proc.stdout
    assert row(proc.stdout, "audit")[1] == "skipped"
    assert "passed" not in proc.stdout


def pinned(name: str) -> str:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(p.split("==")[1] for p in pins if p.split("==")[0] == name)


def test_the_audit_fails_naming_a_pinned_package_the_user_data_lists(tmp_path: Path) -> None:
    version = pinned("pyyaml")
    data = tmp_path / "osv"
    data.mkdir()
    (data / "PYSEC-0000-1.json").write_text(
        json.dumps(
            {
                "id": "PYSEC-0000-1",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"}, "versions": [version]}],
            }
        )
    )
    # A range that the installed version is past: not a finding.
    (data / "PYSEC-0000-2.json").write_text(
        json.dumps(
            {
                "id": "PYSEC-0000-2",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "pyyaml"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}],
                    }
                ],
            }
        )
    )
    proc = run_ci("--stage", "audit", "--artifacts", str(tmp_path / "artifacts"), **{ci.VULN_DATA_VAR: str(data)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"PyYAML {version}: PYSEC-0000-1" in proc.stdout
    assert "PYSEC-0000-2" not in proc.stdout
    assert row(proc.stdout, "audit")[1] == "failed"
    assert (tmp_path / "artifacts" / "app" / "release.json").is_file(), "the app's wheelhouse was not audited"


def test_the_wheelhouse_counts_in_the_audit(tmp_path: Path) -> None:
    from ops import vulns

    names = ["redis-8.1.0-py3-none-any.whl", "scalemart-1.0.0-py3-none-any.whl", "pip-23.2.1-py3-none-any.whl"]
    record = {
        "id": "GHSA-test",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "redis"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "8.0"}, {"fixed": "8.1.1"}]}],
            }
        ],
    }
    assert vulns.match(vulns.wheel_versions(names), [record]) == ["redis 8.1.0: GHSA-test (fixed in 8.1.1)"]
    assert vulns.match({"redis": "8.1.1"}, [record]) == []


def test_a_broken_data_file_names_the_fix(tmp_path: Path) -> None:
    from ops import vulns

    bad = tmp_path / "vulns.json"
    bad.write_text(json.dumps({"name": "not osv"}))
    with pytest.raises(vulns.VulnDataError, match="not an OSV record"):
        vulns.load(bad)
    proc = run_ci("--stage", "audit", **{ci.VULN_DATA_VAR: str(bad)})
    assert proc.returncode == 1 and row(proc.stdout, "audit")[1] == "failed", proc.stdout + proc.stderr


@pytest.mark.parametrize("shape", ["empty folder", "empty list", "zip without json", "no PyPI record"])
def test_vulnerability_data_without_records_fails_the_audit(tmp_path: Path, shape: str) -> None:
    import zipfile

    npm_only = {"id": "GHSA-npm", "affected": [{"package": {"ecosystem": "npm", "name": "left-pad"}, "versions": []}]}
    data = tmp_path / {"empty folder": "osv", "zip without json": "all.zip"}.get(shape, "osv.json")
    if shape == "empty folder":
        data.mkdir()
    elif shape == "zip without json":
        with zipfile.ZipFile(data, "w") as zf:
            zf.writestr("README.txt", "no records here\n")
    else:
        data.write_text(json.dumps([] if shape == "empty list" else [npm_only]))
    proc = run_ci("--stage", "audit", **{ci.VULN_DATA_VAR: str(data)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert row(proc.stdout, "audit")[1] == "failed"
    assert f"{ci.VULN_DATA_VAR}={data}" in proc.stderr and "a data file with PyPI records" in proc.stderr, proc.stderr
    assert "passed" not in proc.stdout


# --- images, push and deploy (the release stages) ----------------------------------------------------------------


@pytest.fixture
def release_run(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """GitHub Actions as push sees it; every command a stage would run is recorded here instead of run (pushing needs
    a registry these machines cannot reach)."""
    for name, value in {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_SHA": "0123abc",
        ci.REGISTRY_VAR: "Registry.Example:5000/",
        ci.OWNER_VAR: "ScaleMart",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_REF_TYPE", raising=False)
    commands: list[list[str]] = []
    monkeypatch.setattr(ci, "sh", lambda *argv, cwd=ROOT: commands.append([str(a) for a in argv]))
    return commands


BUILT = {"scalemart-base": "scalemart-base:this-run", ci.APP_IMAGE: f"{ci.APP_IMAGE}:1.0.0+this-run"}


def _images(outcome: str) -> ci.Stage:
    def run(ctx: ci.Context) -> None:
        if outcome == "failed":
            raise ci.Fail("`docker build …` exited 1")
        ctx.images = dict(BUILT)

    return ci.Stage("images", run, "stand-in for the images stage", "images")


def _scan(outcome: str) -> ci.Stage:
    def run(ctx: ci.Context) -> None:
        ci.built_images(ctx, "image-scan")
        if outcome == "failed":
            raise ci.Fail("`trivy image …` exited 1")

    return ci.Stage("image-scan", run, "stand-in for the image scan", "images")


def _push_stages(images: str, scan: str) -> list[ci.Stage]:
    return [_images(images), _scan(scan), ci.Stage("push", ci.push, "push", "release")]


@pytest.mark.parametrize(
    ("images", "scan", "named"), [("failed", "passed", "images"), ("passed", "failed", "image-scan")]
)
def test_push_refuses_when_images_or_the_scan_failed_in_this_run(
    release_run: list[list[str]], images: str, scan: str, named: str
) -> None:
    results = ci.run_stages(_push_stages(images, scan), ci.Context())
    push = results[-1]
    assert push.status == "failed", push
    assert f"{named} " in push.note and "failed in this run" in push.note, push.note
    assert release_run == [], "nothing may be tagged or pushed"


def test_push_without_the_images_stage_in_this_run_asks_for_it(release_run: list[list[str]]) -> None:
    # Whatever an earlier run left on the machine (scalemart-app:latest …) is never a candidate.
    [push] = ci.run_stages([ci.Stage("push", ci.push, "push", "release")], ci.Context())
    assert push.status == "failed" and "no images were built in this run" in push.note, push
    assert "images stage first" in push.note
    assert release_run == []


def test_push_sends_only_the_images_this_run_built_and_scanned(release_run: list[list[str]]) -> None:
    results = ci.run_stages(_push_stages("passed", "passed"), ci.Context())
    assert [r.status for r in results] == ["passed", "passed", "passed"], results
    tagged = {(c[2], c[3]) for c in release_run if c[:2] == ["docker", "tag"]}
    assert {local for local, _ in tagged} == set(BUILT.values())
    versions = ci.versions()
    assert tagged == {
        (BUILT[name], f"registry.example:5000/scalemart/{name}:{tag}")
        for name in BUILT
        for tag in ["0123abc", *versions[name]]
    }
    pushed = [c[-1] for c in release_run if c[:2] == ["docker", "push"]]
    assert sorted(pushed) == sorted(remote for _, remote in tagged)


def test_push_without_a_registry_fails_naming_the_variable(
    release_run: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ci.REGISTRY_VAR, "")
    results = ci.run_stages(_push_stages("passed", "passed"), ci.Context())
    assert results[-1].status == "failed" and "IMAGE_REGISTRY" in results[-1].note, results[-1]
    assert release_run == []


def test_deploy_without_staging_state_is_refused_while_the_engine_is_unknown(
    release_run: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No staging stack in .state, and the engine does not answer: `make up` never runs (it would start staging anew).
    monkeypatch.setattr(ci, "ROOT", tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    [deploy] = ci.run_stages([ci.Stage("deploy", ci.deploy, "deploy", "release")], ci.Context())
    assert deploy.status == "failed" and "holds no staging stack" in deploy.note, deploy
    assert "STAGING_STATE_DIR" in deploy.note
    assert release_run == []
    # With the stack's state in place, the deploy goes ahead.
    stacks = tmp_path / ".state" / "pulumi" / ".pulumi" / "stacks" / "scalemart"
    stacks.mkdir(parents=True)
    (stacks / "staging.json").write_text("{}")
    [deploy] = ci.run_stages([ci.Stage("deploy", ci.deploy, "deploy", "release")], ci.Context())
    assert deploy.status == "passed" and release_run == [["make", "--no-print-directory", "up", "ENV=staging"]]


# --- release.yml ---------------------------------------------------------------------------------------------------


def _release_steps(job: str) -> list[dict[str, object]]:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    return list(workflow["jobs"][job]["steps"])


def _index(steps: list[dict[str, object]], needle: str) -> int:
    return next(i for i, s in enumerate(steps) if needle in json.dumps(s))


def test_release_checks_the_registry_variable_before_building_or_logging_in() -> None:
    steps = _release_steps("images")
    check = _index(steps, "IMAGE_REGISTRY is empty")
    assert check < _index(steps, "docker/login-action") and check < _index(steps, "make ci STAGES=images,push")


def test_release_writes_the_engine_certificates_before_the_toolchain_talks_to_docker() -> None:
    import yaml

    job = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())["jobs"]["deploy-staging"]
    assert "DOCKER_HOST" not in job.get("env", {}), "a job-wide DOCKER_HOST reaches steps before the certificates"
    steps = job["steps"]
    certs = _index(steps, "DOCKER_CERT_PATH=")
    toolchain = _index(steps, "./.github/actions/toolchain")
    assert certs < toolchain < _index(steps, "make ci STAGES=deploy")
    # staging's state is linked from outside the workspace before anything writes to .state
    assert _index(steps, "ln -sfn") < toolchain
