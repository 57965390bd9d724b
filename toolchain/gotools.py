"""Tools that are neither on PyPI nor in Debian, built with `go build` from exact module versions.

Each tool is built once per (version, recipe) into the cache and linked into `.tools/bin`.
Versions cannot be listed on the module proxy, so every one is named exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
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
    finish: Callable[[Path], None] | None = None  # called with the install bin dir
    recipe: tuple[str, ...] = field(default=())  # extra strings that change the cache key

    def key(self) -> str:
        return digest(self.module, self.version, json.dumps(self.binaries, sort_keys=True), self.mode,
                      str(self.cgo), self.ldflags, self.tags, *self.requires, *self.replaces, *self.recipe)

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
        proc = run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=Path(tmp), capture=True,
                   env={"GOWORK": "off", "GOFLAGS": ""},
                   fix=f"the module proxy must serve {module}@{version}; pin a served version in toolchain/")
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
        if tool.finish is not None:
            tool.finish(bin_dir)
        (dest / ".complete").write_text(tool.version + "\n")
    for binary in bin_dir.iterdir():
        link(binary, TOOLS_BIN / binary.name)
    return bin_dir


# --- the pinned tools -------------------------------------------------------------------------

PULUMI_VERSION = "v3.136.1"


def _pulumi_finish(bin_dir: Path) -> None:
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
    ldflags=(f"-s -w -X github.com/pulumi/pulumi/pkg/v3/version.Version={PULUMI_VERSION}"
             f" -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_VERSION}"),
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

TOOLS: list[GoTool] = [PULUMI, FERRETDB, MONGO_TOOLS, MONGODB_EXPORTER]


# Built by earlier versions of this file and no longer used: github.com/grafana/grafana is
# AGPL-licensed, and this project neither builds nor ships it (README, "Grafana").
RETIRED = ("grafana", "grafana-server", "grafana-cli")


def retire_old_tools() -> None:
    """Remove what earlier bootstraps built and this one no longer does: links and cached builds."""
    for name in RETIRED:
        stale = TOOLS_BIN / name
        if stale.is_symlink() or stale.exists():
            stale.unlink()
            log(f"removed {stale} (no longer part of the toolchain)")
    for cached in (CACHE / "tools").glob("grafana-*"):
        shutil.rmtree(cached, ignore_errors=True)
        log(f"removed the cached build {cached.name} (no longer part of the toolchain)")


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
    retire_old_tools()
    for tool in TOOLS:
        ensure(tool)
    install_langhost(PULUMI.install_dir() / "bin")
