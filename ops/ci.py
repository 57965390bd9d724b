"""`make ci`: the pipeline's stages, here as in the workflows (.github/workflows), one script for both.

    python -m ops.ci                          every stage, in order
    python -m ops.ci --stage lint,security    those stages (a group such as `security` names several)
    python -m ops.ci --stage molecule --scenario redis
    python -m ops.ci --list molecule          the molecule scenarios as JSON (the workflow's matrix)

Each workflow job runs `make ci STAGES=<stage>`, so a job and a local run cannot drift apart. A stage that
needs the internet (pushing images, an online vulnerability database, the image scan) or the staging engine is
skipped with one line saying why, and the others still run. The run ends with a table of the stages, their
status and duration; it exits non-zero when a stage failed. "Online" is an explicit setting, never a probe of
the network: GitHub Actions sets CI=true and GITHUB_ACTIONS=true.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".secrets.baseline"
VULN_DATA_VAR = "SCALEMART_VULN_DATA"
REGISTRY_VAR = "SCALEMART_IMAGE_REGISTRY"  # the registry's host, e.g. the repository variable IMAGE_REGISTRY
OWNER_VAR = "SCALEMART_IMAGE_OWNER"  # the namespace under it (the repository owner), lowercased here
APP_IMAGE = "scalemart-app"
# The code the code scan reads: everything that runs on the control machine or a host (tests are linted by ruff).
CODE = ["app/scalemart", "app/bench", "ops", "toolchain", "stack", "alert_rules", "dashboards", "backups", "loadtests"]


class Skip(Exception):  # noqa: N818 - a stage's outcome, not an error
    """The stage cannot run here; the message says why and what would run it."""


class Fail(Exception):  # noqa: N818
    """The stage ran and found a problem; the message names it."""


@dataclass
class Context:
    env: str = "dev"
    scenarios: list[str] = field(default_factory=list)
    workers: str = field(default_factory=lambda: os.environ.get("TEST_WORKERS", "2"))
    vuln_data: str = field(default_factory=lambda: os.environ.get(VULN_DATA_VAR, ""))
    artifacts: Path | None = None  # the build phase's folder; build/<env>/artifacts unless given
    images: dict[str, str] = field(default_factory=dict)  # name -> local ref, filled by this run's images stage
    statuses: dict[str, str] = field(default_factory=dict)  # stage -> passed | failed | skipped, in this run


def online() -> bool:
    return os.environ.get("CI") == "true" and os.environ.get("GITHUB_ACTIONS") == "true"


def sh(*argv: str | Path, cwd: Path = ROOT) -> None:
    """Run one command with its output on the terminal; a non-zero exit fails the stage."""
    cmd = [str(a) for a in argv]
    print(f"$ {shlex.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise Fail(f"`{shlex.join(cmd)[:100]}` exited {proc.returncode}")


def make_test(pytest_args: str) -> None:
    # The Makefile's own pytest line (PYTEST: flags, durations), so `make test` and `make ci` run tests alike.
    sh("make", "--no-print-directory", "test", f"PYTEST_ARGS={pytest_args}")


def scenarios() -> list[str]:
    """The molecule scenarios, found as tests/roles/conftest.py finds them (one test class each)."""
    return sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


# --- the stages ---------------------------------------------------------------------------------------------------


def lint(ctx: Context) -> None:
    sh("make", "--no-print-directory", "lint")


def unit(ctx: Context) -> None:
    # Stage 1 of `make test` without the molecule scenarios, which are a stage (a matrix in CI) of their own.
    make_test(f"-n {ctx.workers} --dist loadscope --ignore=tests/e2e --ignore=tests/roles/test_molecule.py")


def molecule(ctx: Context) -> None:
    known = scenarios()
    unknown = sorted(set(ctx.scenarios) - set(known))
    if unknown:
        raise Fail(f"no molecule scenario {', '.join(unknown)}; the scenarios are {', '.join(known)}")
    chosen = ctx.scenarios or known
    select = " or ".join(f"TestScenario_{s}" for s in chosen)
    spread = f"-n {ctx.workers} --dist loadscope " if len(chosen) > 1 else ""
    make_test(f"{spread}tests/roles/test_molecule.py -k '{select}'")


def e2e(ctx: Context) -> None:
    make_test("tests/e2e")


def installed() -> dict[str, str]:
    """The control machine's packages: the pins of pyproject.toml and everything they pulled in."""
    return {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}


def app_bundle(ctx: Context) -> Path:
    """The app's bundle (wheel + wheelhouse), built by the build phase's own code unless it is up to date."""
    from ops import build

    root = ctx.artifacts or build.artifacts_dir(ctx.env)
    app = next(a for a in build.artifacts(f"scalemart-base:{image_tag()}") if a.name == "app")
    root.mkdir(parents=True, exist_ok=True)
    try:
        build.build_one(app, root)
    except build.BuildError as exc:
        raise Fail(f"the app bundle: {exc}") from None
    return root / "app"


def wheelhouse(bundle: Path) -> dict[str, str]:
    import tarfile

    from ops import vulns

    release = json.loads((bundle / "release.json").read_text())
    with tarfile.open(bundle / release["tarball"]) as tar:
        return vulns.wheel_versions(tar.getnames())


def audit(ctx: Context) -> None:
    """The dependency audit: the control machine's pins and the app's wheelhouse against known vulnerabilities."""
    if not online() and not ctx.vuln_data:
        raise Skip(
            f"no vulnerability data (set {VULN_DATA_VAR}=<OSV JSON file, folder or zip>; "
            "CI audits online with pip-audit)"
        )
    from ops import vulns

    try:
        records = vulns.load(Path(ctx.vuln_data)) if ctx.vuln_data else []
    except vulns.VulnDataError as exc:
        raise Fail(str(exc)) from None
    sources = {"control machine": installed(), "app wheelhouse": wheelhouse(app_bundle(ctx))}
    if ctx.vuln_data:
        findings = [
            f"{line} [{where}]" for where, packages in sources.items() for line in vulns.match(packages, records)
        ]
        print(
            f"audit: {', '.join(f'{len(p)} packages of the {w}' for w, p in sources.items())} against "
            f"{len(records)} records of {ctx.vuln_data}",
            flush=True,
        )
        if findings:
            for line in findings:
                print(f"  {line}", flush=True)
            raise Fail(f"{len(findings)} known vulnerabilities: {findings[0]}" + (" …" if len(findings) > 1 else ""))
        return
    # One requirements file per source, each audited: the same package may be pinned differently in each.
    failed = []
    with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
        for where, packages in sources.items():
            reqs = Path(tmp) / f"{where.replace(' ', '-')}.txt"
            reqs.write_text("".join(f"{name}=={version}\n" for name, version in sorted(packages.items())))
            pip_audit = [sys.executable, "-m", "pip_audit", "--no-deps", "--disable-pip", "--progress-spinner", "off"]
            try:
                sh(*pip_audit, "--vulnerability-service", "osv", "-r", reqs)
            except Fail:
                failed.append(where)
    if failed:
        raise Fail(f"pip-audit found known vulnerabilities in the {' and the '.join(failed)}")


def codescan(ctx: Context) -> None:
    sh(sys.executable, "-m", "bandit", "-q", "-c", "pyproject.toml", "-r", *CODE)


def tree_files(root: Path) -> list[str]:
    """The files of the tree as git would commit them: tracked and new ones, ignored ones and links left out."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Fail(f"{root} is not a git work tree ({proc.stderr.strip()}): the secret scan reads the tree git sees")
    return sorted(f for f in set(proc.stdout.split("\0")) if f and (root / f).is_file() and not (root / f).is_symlink())


def secret_scan(root: Path, baseline: Path) -> list[str]:
    """detect-secrets over `root`; return the findings not in the reviewed baseline (one line each)."""
    with tempfile.TemporaryDirectory(prefix="secrets-") as tmp:
        # The hook rewrites the baseline it is given when lines moved: it gets a copy, the reviewed one stays.
        copy = Path(tmp) / "baseline"
        copy.write_bytes(baseline.read_bytes())
        files = [f for f in tree_files(root) if (root / f).resolve() != baseline.resolve()]
        proc = subprocess.run(
            [sys.executable, "-m", "detect_secrets.pre_commit_hook", "--baseline", str(copy), *files],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode == 0:
        return []
    found = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith(("Secret Type", "Location"))]
    pairs = [
        f"{loc.split(':', 1)[1].strip()}: {kind.split(':', 1)[1].strip()}"
        for kind, loc in zip(found[::2], found[1::2], strict=False)
    ]
    return pairs or [proc.stdout.strip() or proc.stderr.strip()]


def secrets(ctx: Context) -> None:
    findings = secret_scan(ROOT, BASELINE)
    for line in findings:
        print(f"  {line}", flush=True)
    if findings:
        raise Fail(
            f"{len(findings)} possible secrets not in .secrets.baseline: {findings[0]} (a real secret: remove "
            "it and rotate it; a false positive: `detect-secrets scan --baseline .secrets.baseline` and "
            "`detect-secrets audit .secrets.baseline`)"
        )


def image_tag() -> str:
    from toolchain import image

    return image.tag().split(":", 1)[1]


APP_DOCKERFILE = """\
FROM {base}
COPY bundle/ /opt/scalemart/bundle/
# The app role's install, without an index: the wheels of the bundle into a venv made without pip.
RUN set -eu; mkdir -p /opt/scalemart/wheels; tar -xf /opt/scalemart/bundle/{tarball} -C /opt/scalemart/wheels; \\
    python3 -m venv --without-pip /opt/scalemart/venv; \\
    /opt/scalemart/venv/bin/python /opt/scalemart/wheels/{pip_wheel}/pip install --no-index \\
        --disable-pip-version-check --find-links /opt/scalemart/wheels pip {name}=={version}; \\
    rm -rf /opt/scalemart/bundle /opt/scalemart/wheels
ENTRYPOINT ["/opt/scalemart/venv/bin/scalemart"]
CMD ["serve"]
"""


def images(ctx: Context) -> None:
    """The base host image (the bootstrap's own step) and an app image from the wheel bundle on top of it."""
    sh("python3", "toolchain/bootstrap.py", "--only", "image")
    base = f"scalemart-base:{image_tag()}"
    bundle = app_bundle(ctx)
    release = json.loads((bundle / "release.json").read_text())
    ref = f"{APP_IMAGE}:{release['release']}"
    with tempfile.TemporaryDirectory(prefix="app-image-") as tmp:
        context = Path(tmp)
        (context / "bundle").mkdir()
        os.link(bundle / release["tarball"], context / "bundle" / release["tarball"])
        (context / "Dockerfile").write_text(APP_DOCKERFILE.format(base=base, **release))
        version = f"org.opencontainers.image.version={release['version']}"
        sh("docker", "build", "--quiet", "--label", version, "-t", ref, "-t", f"{APP_IMAGE}:latest", context)
    ctx.images = {"scalemart-base": base, APP_IMAGE: ref}
    print(f"images: {base}, {ref}", flush=True)


def built_images(ctx: Context, stage: str) -> dict[str, str]:
    """The images this run built; never what an earlier run left on the machine under the same tags."""
    if ctx.statuses.get("images") == "failed":
        raise Fail(f"the images stage failed in this run: {stage} refuses to use images an earlier run left")
    if not ctx.images:
        raise Fail(f"no images were built in this run: {stage} needs the images stage first (make ci STAGES=images)")
    return ctx.images


def image_scan(ctx: Context) -> None:
    if not online():
        raise Skip("the image scan needs Trivy's online vulnerability database (ci.yml's images job runs it)")
    for ref in built_images(ctx, "image-scan").values():
        sh("trivy", "image", "--exit-code", "1", "--severity", "CRITICAL", "--ignore-unfixed", "--no-progress", ref)


def versions() -> dict[str, list[str]]:
    """Each image's tags besides the commit SHA: its project's version, and the git tag on a tag build."""

    def project_version(path: str) -> str:
        return str(tomllib.loads((ROOT / path).read_text())["project"]["version"])

    tag = [os.environ["GITHUB_REF_NAME"]] if os.environ.get("GITHUB_REF_TYPE") == "tag" else []
    return {
        "scalemart-base": [project_version("pyproject.toml"), *tag],
        APP_IMAGE: [project_version("app/pyproject.toml"), *tag],
    }


def push(ctx: Context) -> None:
    if not online():
        raise Skip("pushing images needs the internet and the repository's registry (release.yml does it)")
    registry = os.environ.get(REGISTRY_VAR, "").strip().rstrip("/").lower()
    if not registry:
        raise Fail(
            f"{REGISTRY_VAR} is not set: release.yml sets it from the repository variable IMAGE_REGISTRY "
            "(Settings → Secrets and variables → Actions → Variables: the registry's host)"
        )
    local = built_images(ctx, "push")
    # image-scan is in the images group, so it ran beside images; anything but a pass means unscanned images.
    scan = ctx.statuses.get("image-scan", "did not run")
    if scan != "passed":
        raise Fail(f"image-scan {scan} in this run: push sends only the images scanned in the same run")
    owner = os.environ.get(OWNER_VAR, "").strip().strip("/").lower()
    prefix = f"{registry}/{owner}" if owner else registry
    head = ["git", "rev-parse", "HEAD"]
    sha = (
        os.environ.get("GITHUB_SHA")
        or subprocess.run(head, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    )
    for name, ref in local.items():
        for tag in [sha, *versions()[name]]:
            remote = f"{prefix}/{name}:{tag}"
            sh("docker", "tag", ref, remote)
            sh("docker", "push", "--quiet", remote)


def deploy(ctx: Context) -> None:
    if not online() or not os.environ.get("DOCKER_HOST"):
        raise Skip(
            "deploys staging from release.yml only, to the engine its secrets name (DOCKER_HOST), after "
            "approval; from here: DOCKER_HOST=… make up ENV=staging"
        )
    # Without its state (Pulumi's stack, the passphrase, the vault) an `up` would create staging anew and generate
    # new secrets against an engine that already runs it: refused, naming where the state must be restored.
    from stack.cli import Paths

    backend = Paths(state=ROOT / ".state").backend  # Pulumi's local file backend: .pulumi/stacks/<project>/
    if not any((backend / ".pulumi" / "stacks").rglob("staging.json*")):
        proc = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=scalemart.stack=staging"], capture_output=True, text=True
        )
        if proc.returncode != 0 or proc.stdout.strip():
            raise Fail(
                f"{ROOT / '.state'} holds no staging stack but the engine at DOCKER_HOST "
                + ("runs staging's containers" if proc.returncode == 0 else f"did not answer ({proc.stderr.strip()})")
                + ": restore staging's state (README, CI/CD) to the runner's STAGING_STATE_DIR before deploying"
            )
    sh("make", "--no-print-directory", "up", "ENV=staging")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], None]
    what: str
    group: str = ""


STAGES = [
    Stage("lint", lint, "ruff check + format --check, mypy, yamllint, ansible-lint, promtool, amtool, actionlint"),
    Stage("unit", unit, "every test area but e2e and the molecule scenarios, on TEST_WORKERS workers"),
    Stage("molecule", molecule, "the molecule scenarios (--scenario NAME: one)"),
    Stage("e2e", e2e, "dev up, verify, the alert pipeline, load, rolling restart, failover"),
    Stage("audit", audit, "the pins and the app's wheelhouse against known vulnerabilities", "security"),
    Stage("codescan", codescan, "bandit over the code", "security"),
    Stage("secrets", secrets, "detect-secrets over the tree against .secrets.baseline", "security"),
    Stage("images", images, "the base host image and the app image from the wheel bundle", "images"),
    Stage("image-scan", image_scan, "Trivy on the built images (online)", "images"),
    Stage("push", push, "the images to the registry, tagged with the SHA and the version (online)", "release"),
    Stage("deploy", deploy, "make up ENV=staging against the staging engine (release workflow)", "release"),
]


def select(names: Sequence[str]) -> list[Stage]:
    """The stages named (or in a named group), in the pipeline's order; every stage when none is named."""
    wanted = {n.strip() for name in names for n in name.split(",") if n.strip()}
    known = {s.name for s in STAGES} | {s.group for s in STAGES if s.group}
    unknown = sorted(wanted - known)
    if unknown:
        raise SystemExit(
            f"ci: no stage {', '.join(unknown)}; the stages are "
            f"{', '.join(s.name for s in STAGES)} (groups: security, images, release)"
        )
    return [s for s in STAGES if not wanted or s.name in wanted or s.group in wanted]


@dataclass
class Result:
    stage: str
    status: str  # passed | failed | skipped
    seconds: float
    note: str = ""


def run_stages(stages: Sequence[Stage], ctx: Context) -> list[Result]:
    results = []
    for stage in stages:
        print(f"==> {stage.name}: {stage.what}", flush=True)
        start = time.monotonic()
        try:
            stage.run(ctx)
            status, note = "passed", ""
        except Skip as skip:
            status, note = "skipped", str(skip)
            print(f"{stage.name}: skipped: {note}", flush=True)
        except Fail as fail:
            status, note = "failed", str(fail)
            print(f"{stage.name}: failed: {note}", file=sys.stderr, flush=True)
        results.append(Result(stage.name, status, time.monotonic() - start, note))
        ctx.statuses[stage.name] = status
    return results


def table(results: Sequence[Result]) -> str:
    width = max([len("stage"), *(len(r.stage) for r in results)])
    lines = [f"{'stage':<{width}}  {'status':<7}  {'time':>8}  note"]
    lines += [f"{r.stage:<{width}}  {r.status:<7}  {r.seconds:>6.1f} s  {r.note}".rstrip() for r in results]
    return "\n".join(lines)


def summary(results: Sequence[Result]) -> str:
    """The same table for GitHub's job summary."""
    rows = [f"| {r.stage} | {r.status} | {r.seconds:.1f} s | {r.note} |" for r in results]
    return "\n".join(["| stage | status | time | note |", "|---|---|---|---|", *rows]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.ci", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append", default=[], help="stage or group, repeatable or comma-separated")
    parser.add_argument("--scenario", action="append", default=[], help="molecule scenario (repeatable or commas)")
    parser.add_argument("--env", default="dev", help="the environment whose app bundle the images and audit use")
    parser.add_argument("--artifacts", type=Path, help="the build phase's folder (default: build/ENV/artifacts)")
    parser.add_argument("--list", choices=["stages", "molecule"], help="print the stages or scenarios as JSON")
    args = parser.parse_args(argv)
    if args.list:
        print(json.dumps(scenarios() if args.list == "molecule" else [s.name for s in STAGES]))
        return 0
    stages = select(args.stage)
    chosen = [n.strip() for s in args.scenario for n in s.split(",") if n.strip()]
    results = run_stages(stages, Context(env=args.env, scenarios=chosen, artifacts=args.artifacts))
    print("\n" + table(results), flush=True)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(summary(results))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
