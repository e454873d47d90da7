"""What this host offers: cgroup version and controllers, kernel filesystems and features."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class CgroupInfo:
    """``version`` is 1, 2 or "hybrid"; ``v1`` maps controller -> mount, ``v2_controllers`` lists the unified ones."""

    version: str
    v1: dict[str, str] = field(default_factory=dict)
    v2_mount: str = ""
    v2_controllers: list[str] = field(default_factory=list)


def cgroup_info(mounts_file: str = "/proc/self/mounts") -> CgroupInfo:
    from pallet.kernel.cgroups import V1_CONTROLLERS, hierarchies

    mounts, v2_mount = hierarchies(mounts_file)
    v1 = {name: str(path) for name, path in mounts.items() if name in V1_CONTROLLERS}
    v2_controllers: list[str] = []
    if v2_mount:
        try:
            v2_controllers = Path(v2_mount, "cgroup.controllers").read_text().split()
        except OSError:
            pass
    if v1 and v2_mount:
        version = "hybrid"
    elif v1:
        version = "1"
    else:
        version = "2"
    return CgroupInfo(version, v1, v2_mount, v2_controllers)


def filesystems() -> set[str]:
    """Filesystem types this kernel supports (``/proc/filesystems``)."""
    with open("/proc/filesystems") as handle:
        return {line.split()[-1] for line in handle if line.strip()}


def kernel_features() -> dict[str, bool]:
    fs = filesystems()
    return {
        "overlay": "overlay" in fs,
        "btrfs": "btrfs" in fs,
        "fuse": "fuse" in fs,
        "seccomp": _seccomp_available(),
        "user_namespaces": os.path.exists("/proc/self/ns/user"),
        "cgroup_namespaces": os.path.exists("/proc/self/ns/cgroup"),
        "device_mapper": os.path.exists("/dev/mapper/control"),
        "apparmor": os.path.isdir("/sys/kernel/security/apparmor"),
        "selinux": os.path.isdir("/sys/fs/selinux") and os.path.exists("/sys/fs/selinux/enforce"),
        "landlock": landlock_abi() > 0,
    }


def landlock_abi() -> int:
    """Landlock ABI version (0 when absent)."""
    from pallet.kernel import linux

    return linux.landlock_abi()


def _seccomp_available() -> bool:
    return "Seccomp:" in _read("/proc/self/status")


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def kernel_release() -> str:
    return platform.release()


def nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def filesystem_of(path) -> tuple[str, str]:
    """``(fstype, mountpoint)`` of the mount holding ``path`` (or its nearest existing ancestor)."""
    target = os.path.realpath(nearest_existing(Path(path)))
    best = ("", "/")
    best_len = -1
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            mountpoint = left.split()[4].replace("\\040", " ")
            fstype = right.split()[0]
            inside = target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= best_len:
                best, best_len = (fstype, mountpoint), len(mountpoint)
    return best


def which(command: str) -> str | None:
    import shutil
    return shutil.which(command)
