"""The base host image, built locally: debootstrap → docker import → a systemd layer.

No image registry exists here. The tag is a hash of the recipe (this file, the Dockerfile, the
package list and the control machine's CA bundle), so a changed recipe rebuilds and an
unchanged one does not. `scalemart-base:latest` always points at the current build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from toolchain.common import CACHE, ToolchainError, digest, log, need, run

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "image"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SUITE = "bookworm"
REPO = "scalemart-base"
# What a host needs before Ansible can manage it; services come later, from the roles.
INCLUDE = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "ca-certificates",
    "procps",
    "iputils-ping",
    "less",
]


def debian_mirror() -> str:
    """The mirror this machine's apt already uses (never written into the project)."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if source.exists():
            text = source.read_text()
            match = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(\S+)\s+\S+\s+main", text, re.M)
            if match:
                return match.group(1)
    raise ToolchainError(
        "no Debian mirror found in /etc/apt/sources.list*",
        "configure apt on the control machine, then rerun `make bootstrap`",
    )


def tag() -> str:
    parts: list[bytes | str | Path] = [Path(__file__), *sorted(p for p in RECIPE.iterdir() if p.is_file())]
    if CA_BUNDLE.exists():
        parts.append(CA_BUNDLE)
    return f"{REPO}:{digest(*parts, ' '.join(INCLUDE))}"


def _exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode == 0


def _rootfs(ref: str) -> None:
    """debootstrap a minimal bookworm with systemd and python3, then `docker import` it."""
    need("debootstrap", "apt-get install -y debootstrap")
    tarball = CACHE / "images" / f"rootfs-{digest(SUITE, ' '.join(INCLUDE))}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-") as tmp:
            target = Path(tmp) / SUITE
            log(f"base image: debootstrap {SUITE} (about a minute)")
            run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, target, debian_mirror()],
                log_file=CACHE / "logs" / "debootstrap.log",
                fix="check that the Debian mirror is reachable, then rerun `make bootstrap`",
            )
            partial = tarball.with_suffix(".partial")
            run(["tar", "-C", target, "--numeric-owner", "-cf", partial, "."])
            partial.rename(tarball)
    run(
        ["docker", "import", "--change", 'CMD ["/lib/systemd/systemd"]', tarball, ref],
        capture=True,
        fix="start the Docker engine (make bootstrap does) and retry",
    )


def _split_bundle(dest: Path) -> int:
    """Write each certificate of the control machine's bundle to its own .crt file."""
    dest.mkdir(parents=True, exist_ok=True)
    if not CA_BUNDLE.exists():
        return 0
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", CA_BUNDLE.read_text(), re.S)
    for i, cert in enumerate(certs):
        (dest / f"control-{i:03d}.crt").write_text(cert + "\n")
    return len(certs)


def build() -> str:
    ref = tag()
    if _exists(ref):
        log(f"base image: {ref} present")
    else:
        rootfs_ref = f"scalemart-rootfs:{digest(SUITE, ' '.join(INCLUDE))}"
        if not _exists(rootfs_ref):
            _rootfs(rootfs_ref)
        with tempfile.TemporaryDirectory(prefix="image-") as tmp:
            ctx = Path(tmp)
            for f in RECIPE.iterdir():
                shutil.copy(f, ctx / f.name)
            count = _split_bundle(ctx / "ca")
            log(f"base image: building {ref} ({count} CA certificates from the control machine)")
            run(
                ["docker", "build", "--build-arg", f"ROOTFS={rootfs_ref}", "-t", ref, ctx],
                log_file=CACHE / "logs" / "image-build.log",
                fix="read the log; a failing apt step inside the build needs the Debian mirror",
            )
    run(["docker", "tag", ref, f"{REPO}:latest"])
    return ref


if __name__ == "__main__":
    print(tag())
