"""A Pulumi language host for Python programs, implementing the LanguageRuntime gRPC service.

Why this exists: the Go module of Pulumi's own host (sdk/python/cmd/pulumi-language-python/v3)
is not served by the module proxy here, at the pinned pseudo-version or the release tag. The
engine only needs the host to start, report its port, and run the program through the
`pulumi-language-python-exec` script that ships in the sdk/v3 module (installed beside the CLI),
so this file does exactly that with the SDK's own generated gRPC stubs.

Started by the engine as `pulumi-language-python [-flags…] ENGINE_ADDRESS`; prints the port it
listens on, then serves until the engine goes away.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

VERSION = "3.136.1"
# Exit code the exec script uses after it has already shown the user an actionable message.
USER_ACTIONABLE_EXIT = 32


def _python(info: language_pb2.ProgramInfo | None) -> str:
    """The interpreter to run the program with: the project's virtualenv when it names one."""
    if info is not None and info.options:
        venv = dict(info.options.items()).get("virtualenv")
        if venv:
            root = Path(info.root_directory or ".")
            candidate = (root / str(venv) / "bin" / "python").absolute()
            if candidate.exists():
                return str(candidate)
    return os.environ.get("PULUMI_PYTHON_CMD") or sys.executable


def _exec_script() -> str:
    here = Path(sys.argv[0]).resolve().parent
    for candidate in (Path(shutil.which("pulumi-language-python-exec") or ""), here / "pulumi-language-python-exec"):
        if candidate.name and candidate.is_file():
            return str(candidate)
    raise RuntimeError("pulumi-language-python-exec not found on PATH; run `make bootstrap`")


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address

    def GetPluginInfo(self, request, context):  # noqa: N802 - gRPC method names
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetRequiredPlugins(self, request, context):  # noqa: N802
        # Programs here use only dynamic providers (bundled with the SDK): nothing to install.
        return language_pb2.GetRequiredPluginsResponse(plugins=[])

    def GetProgramDependencies(self, request, context):  # noqa: N802
        return language_pb2.GetProgramDependenciesResponse(dependencies=[])

    def About(self, request, context):  # noqa: N802
        python = _python(None)
        version = subprocess.run([python, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        return language_pb2.AboutResponse(executable=python, version=version.removeprefix("Python "))

    def RuntimeOptionsPrompts(self, request, context):  # noqa: N802
        return language_pb2.RuntimeOptionsResponse(prompts=[])

    def InstallDependencies(self, request, context):  # noqa: N802
        # Dependencies come from the project's pinned virtualenv (`make bootstrap`), never from here.
        yield language_pb2.InstallDependenciesResponse(stdout=b"dependencies are managed by `make bootstrap`\n")

    def Run(self, request, context):  # noqa: N802
        info = request.info if request.HasField("info") else None
        program = request.program or "."
        if info is not None and info.program_directory:
            program = info.program_directory
        args = [
            _python(info),
            "-u",
            _exec_script(),
            "--monitor",
            request.monitor_address,
            "--engine",
            self.engine_address,
            "--project",
            request.project,
            "--stack",
            request.stack,
            "--pwd",
            request.pwd,
            "--dry_run",
            "true" if request.dryRun else "false",
            "--parallel",
            str(request.parallel or 1),
        ]
        if request.organization:
            args += ["--organization", request.organization]
        args += [program, *request.args]
        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config.items()))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        env["PULUMI_RUNTIME_VIRTUALENV"] = str(Path(args[0]).parent.parent)
        proc = subprocess.run(args, cwd=request.pwd or None, env=env, check=False)
        if proc.returncode == 0:
            return language_pb2.RunResponse()
        if proc.returncode == USER_ACTIONABLE_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {proc.returncode}")


def _watch_parent(parent: int) -> None:
    # The engine does not always stop its plugins explicitly; exit when it is gone.
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1)


def main() -> int:
    positional = [a for a in sys.argv[1:] if not a.startswith("-")]
    if not positional:
        print("usage: pulumi-language-python [flags] ENGINE_ADDRESS (started by the pulumi CLI)", file=sys.stderr)
        return 2
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)]
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageHost(positional[-1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    server.wait_for_termination()
    return 0


_ = empty_pb2  # imported so a broken protobuf install fails here, at start, with a clear trace

if __name__ == "__main__":
    sys.exit(main())
