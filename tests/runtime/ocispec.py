"""A minimal OCI runtime-spec generator for the runtime tests (kernel/spec.py builds the real one)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/firmware",
          "/sys/devices/virtual/powercap"]
# runc fails rather than clamp when a hard limit is above ours (no CAP_SYS_RESOURCE here).
NOFILE_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def make_rootfs(path: Path) -> Path:
    """A busybox rootfs: /bin/busybox from busybox-static and one symlink per applet."""
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", path / "bin" / applet)
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (path / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    return path


def spec(args, hostname="box", terminal=False, **extra) -> dict:
    """Docker-like defaults: all namespaces, 14 capabilities, masked and read-only paths."""
    caps = list(DOCKER_CAPS)
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE_HARD, "soft": NOFILE_HARD}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
            "resources": {"devices": [{"allow": False, "access": "rwm"}]
                          + [{"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                             for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))]
                          + [{"allow": True, "type": "c", "major": 136, "access": "rwm"}]},
        },
    }
    for key, value in extra.items():
        if key.startswith("linux_"):
            config["linux"][key.removeprefix("linux_")] = value
        elif key in ("resources", "seccomp", "cgroupsPath", "namespaces", "sysctl", "uidMappings", "gidMappings"):
            config["linux"][key] = value
        elif key in config["process"] or key in ("oomScoreAdj", "apparmorProfile", "selinuxLabel", "consoleSize"):
            config["process"][key] = value
        else:
            config[key] = value
    return config


def write_bundle(bundle: Path, rootfs: Path, config: dict) -> Path:
    bundle.mkdir(parents=True, exist_ok=True)
    config = dict(config, root=dict(config["root"], path=str(rootfs)))  # runc refuses a symlinked rootfs
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle
