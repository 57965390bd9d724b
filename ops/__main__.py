"""`make up` / `make verify` / `make down`: one command to a verified environment.

    python -m ops up ENV        build → stack → inventory → secrets → site.yml → verify → URLs
    python -m ops build ENV     the build phase alone: every artifact into build/ENV/artifacts (ops/build.py)
    python -m ops verify ENV    the testinfra suite against the generated inventory
    python -m ops down ENV [--purge]
    python -m ops restart ENV   rolling restart: app hosts one at a time, drained from the balancer

Each phase prints its duration; a failure names the phase, the host when one is known, and
the command to run next.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from ops import build as artifacts
from ops import converge, secrets
from ops.inventory import Inventory
from stack.config import ENVIRONMENTS
from toolchain.common import BUILD, ROOT, VENV_BIN, tool_env

FAILED_HOST = re.compile(r"^(?:fatal|failed): \[([^\]]+)\]")


class PhaseFailed(RuntimeError):
    def __init__(self, phase: str, host: str | None, next_cmd: str, log: Path) -> None:
        super().__init__(phase)
        self.phase, self.host, self.next_cmd, self.log = phase, host, next_cmd, log


def build_dir(env: str) -> Path:
    return BUILD / env


def phase(
    index: int,
    total: int,
    name: str,
    cmd: Sequence[str | Path] | dict[str, Sequence[str | Path]],
    env: str,
    next_cmd: str,
    quiet: bool = False,
) -> float:
    """Run one phase, streaming its output to the terminal and a log; return its duration.

    `cmd` may map labels to commands that run at the same time: each streams with its label in
    front and logs to `<phase>-<label>.log`; the phase fails if any of them fails.
    """
    cmds = cmd if isinstance(cmd, dict) else {"": cmd}
    print(f"==> [{index}/{total}] {name} ({env}) …", flush=True)
    start = time.monotonic()
    lock = threading.Lock()
    results: dict[str, tuple[int, str | None, Path]] = {}

    def run(label: str, argv: Sequence[str | Path]) -> None:
        log = build_dir(env) / "logs" / (f"{name}-{label}.log" if label else f"{name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"    [{label}] " if label else "    "
        host = None
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [str(c) for c in argv],
                cwd=ROOT,
                env=tool_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                if not quiet:
                    with lock:
                        sys.stdout.write(prefix + line)
                match = FAILED_HOST.match(line)
                if match and host is None:
                    host = match.group(1)
            results[label] = (proc.wait(), host, log)

    threads = [threading.Thread(target=run, args=item) for item in cmds.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    for label in cmds:
        if label not in results:  # the command could not even start; its thread printed why
            raise PhaseFailed(name, None, next_cmd, build_dir(env) / "logs")
    for code, host, log in results.values():
        if code != 0:
            raise PhaseFailed(name, host, next_cmd, log)
    print(f"==> [{index}/{total}] {name}: ok in {took:.1f} s", flush=True)
    return took


def stack_cmd(action: str, env: str, *extra: str) -> list[str | Path]:
    return [VENV_BIN / "python", "-m", "stack.cli", action, env, *extra]


def inventory(env: str) -> Path:
    return build_dir(env) / "inventory.yml"


def playbook_cmd(env: str, playbook: str = "site.yml", *extra: str) -> list[str | Path]:
    # Site-specific variables (alert recipients, sizes) come from a vars file the user names:
    # SCALEMART_EXTRA_VARS=path/to/vars.yml; they are never committed.
    user_vars = os.environ.get("SCALEMART_EXTRA_VARS")
    more = ["-e", f"@{user_vars}"] if user_vars else []
    return [
        VENV_BIN / "ansible-playbook",
        "-i",
        inventory(env),
        *secrets.ansible_args(env),
        *more,
        ROOT / "playbooks" / playbook,
        *extra,
    ]


def configure_cmds(env: str) -> dict[str, Sequence[str | Path]]:
    """site.yml as two runs at once: the monitoring hosts, and every other host.

    No play on one side reads facts of the other (they share inventory variables only), and the
    plays of each side keep their order, so a warm run takes the longer side's time, not the sum.
    """
    if not Inventory.load(inventory(env)).group("monitoring"):
        return {"": playbook_cmd(env)}
    return {
        "hosts": playbook_cmd(env, "site.yml", "--limit", "all:!monitoring"),
        "monitoring": playbook_cmd(env, "site.yml", "--limit", "monitoring"),
    }


def verify_cmd(env: str) -> list[str | Path]:
    return [
        VENV_BIN / "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "tests/infra",
        f"--scalemart-env={env}",
    ]


def urls(env: str) -> dict[str, str]:
    path = build_dir(env) / "outputs.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("urls", {}))


def summary(env: str, timings: dict[str, float]) -> None:
    print()
    print(
        f"ScaleMart {env} is up and verified "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}; total {sum(timings.values()):.0f} s)"
    )
    site = yaml.safe_load(secrets.SITE_VARS.read_text())
    for name, url in urls(env).items():
        note = ""
        if name == "perses":
            note = f"  (dashboards: log in as admin, password perses_admin_password from `make credentials ENV={env}`)"
        elif name in ("prometheus", "alertmanager"):
            note = f"  (log in as {site[f'{name}_web_user']}, password {name}_web_password from `make credentials`)"
        print(f"  {name:<13} {url}{note}")
    print(f"  credentials   {secrets.describe(env)}")
    print(f"  inventory     {inventory(env)}")


def build_cmd(env: str) -> list[str | Path]:
    return [VENV_BIN / "python", "-m", "ops", "build", env]


def up(env: str, force: bool = False) -> None:
    total = 4
    # Before the stack: an artifact that does not build stops the run before any host changes.
    timings = {"build": phase(1, total, "build", build_cmd(env), env, f"make build ENV={env}")}
    timings["stack"] = phase(2, total, "stack", stack_cmd("up", env), env, f"python -m stack.cli up {env}")
    created = secrets.ensure(env)
    if created:
        print(f"    generated credentials for {env} (shown once): {secrets.describe(env)}")
        for key, value in created.items():
            print(f"      {key} = {value}")
    inputs = converge.key(env, inventory(env), secrets.vault_file(env), artifacts.artifacts_dir(env))
    last = None if force else converge.unchanged(env, inputs)
    if last:
        print(
            f"==> [3/{total}] configure: skipped, nothing it depends on changed since the converge of {last} "
            f"(inputs {inputs}; FORCE=1 converges anyway)",
            flush=True,
        )
    else:
        timings["configure"] = configure(env, inputs, 3, total)
    try:
        timings["verify"] = phase(4, total, "verify", verify_cmd(env), env, f"make verify ENV={env}")
    except PhaseFailed:
        if not last:
            raise
        # A host drifted without any input changing (a service stopped by hand): converge it back.
        print("    verify failed after a skipped converge: converging every host, then verifying again", flush=True)
        timings["configure"] = configure(env, inputs, 3, total)
        timings["verify"] = phase(4, total, "verify", verify_cmd(env), env, f"make verify ENV={env}")
    summary(env, timings)


def configure(env: str, inputs: str | None, index: int = 1, total: int = 1) -> float:
    """site.yml on every host; a success is remembered so that the next `up` can skip it (ops/converge.py)."""
    converge.forget(env)
    took = phase(
        index, total, "configure", configure_cmds(env), env, f"make up ENV={env}  (or rerun the playbook: see the log)"
    )
    converge.record(env, inputs)
    return took


def env_image(env: str) -> str:
    """The hosts' image of `env`: its stack config's, else the toolchain's current base image."""
    from stack.cli import stack_config
    from toolchain import image

    return str(stack_config(env).get("scalemart:image") or image.tag())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "build", "verify", "down", "configure", "restart"])
    parser.add_argument("env", help=f"one of {', '.join(ENVIRONMENTS)}")
    parser.add_argument("--purge", action="store_true", help="down: delete the data volumes too")
    parser.add_argument(
        "--force", action="store_true", help="up: run the playbooks even when nothing they depend on changed"
    )
    args = parser.parse_args(argv)
    if args.env not in ENVIRONMENTS:
        print(f"unknown environment {args.env!r}: use ENV={'|'.join(ENVIRONMENTS)}", file=sys.stderr)
        return 2
    try:
        if args.action == "up":
            up(args.env, force=args.force)
        elif args.action == "build":
            # Runs in-process: this is the command `up` runs as its first phase.
            artifacts.build(args.env, env_image(args.env))
        elif args.action == "configure":
            secrets.ensure(args.env)
            configure(
                args.env,
                converge.key(
                    args.env, inventory(args.env), secrets.vault_file(args.env), artifacts.artifacts_dir(args.env)
                ),
            )
        elif args.action == "restart":
            phase(
                1,
                1,
                "restart",
                playbook_cmd(args.env, "rolling-restart.yml"),
                args.env,
                f"make restart ENV={args.env}  (a host that did not come back is named above; the others serve)",
            )
        elif args.action == "verify":
            phase(1, 1, "verify", verify_cmd(args.env), args.env, f"make verify ENV={args.env}")
        else:
            extra = ["--purge"] if args.purge else []
            converge.forget(args.env)
            phase(1, 1, "down", stack_cmd("down", args.env, *extra), args.env, f"make down ENV={args.env}")
    except artifacts.BuildError as err:
        print(f"\nFAILED in phase 'build': {err}\nNext: fix it, then `make build ENV={args.env}`", file=sys.stderr)
        return 1
    except PhaseFailed as err:
        where = f" on host {err.host}" if err.host else ""
        print(f"\nFAILED in phase '{err.phase}'{where}. Log: {err.log}\nNext: {err.next_cmd}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
