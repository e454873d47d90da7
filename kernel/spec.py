"""Build a container's OCI runtime-spec ``config.json`` from its record (image config merged with flags)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from pallet.kernel.errors import PalletError, UsageError

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's defaults (moby oci/defaults.go); --privileged clears both.
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Character devices a default container may use (moby's DefaultCapabilities device rules).
ALLOWED_DEVICES = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None), (10, 200)]
RLIMIT_NAMES = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "core": "RLIMIT_CORE", "stack": "RLIMIT_STACK",
                "memlock": "RLIMIT_MEMLOCK", "fsize": "RLIMIT_FSIZE", "cpu": "RLIMIT_CPU", "as": "RLIMIT_AS",
                "data": "RLIMIT_DATA", "locks": "RLIMIT_LOCKS", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
                "rtprio": "RLIMIT_RTPRIO", "sigpending": "RLIMIT_SIGPENDING", "rss": "RLIMIT_RSS"}


def cgroups_path(cid: str) -> str:
    return f"/pallet/{cid}"


def build_spec(record, rootfs: Path, etc_files: dict[str, Path], netns_path: str | None, mounts: list[dict]) -> dict:
    """The spec for ``record``: ``etc_files`` maps /etc/hosts etc. to host files; ``mounts`` are resolved user mounts."""
    config, host = record.config, record.host_config
    privileged = bool(host.get("Privileged"))
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not args:
        raise PalletError("No command specified")
    user = resolve_user(rootfs, config.get("User") or "")
    env = list(config.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    env = [e for e in env if not e.startswith("HOSTNAME=")] + [f"HOSTNAME={config.get('Hostname', '')}"]
    if config.get("Tty") and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    if user["uid"] != 0 and not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user['home']}")
    elif not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root")
    process = {
        "terminal": bool(config.get("Tty")),
        "user": {"uid": user["uid"], "gid": user["gid"], "additionalGids": user["additional_gids"]},
        "args": args,
        "env": env,
        "cwd": config.get("WorkingDir") or "/",
        "rlimits": rlimits(host.get("Ulimits") or []),
        "noNewPrivileges": False,
    }
    size = _terminal_size() if process["terminal"] else None
    if size:
        process["consoleSize"] = size  # set before the process starts, so its first `stty size` is right
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(host["OomScoreAdj"])
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if os.path.exists("/proc/self/ns/cgroup"):
        namespaces.append({"type": "cgroup"})
    if record.network_mode != "host":
        namespaces.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    spec = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": config.get("Hostname", ""),
        "mounts": default_mounts(privileged) + etc_mounts(etc_files) + mounts,
        "annotations": {"run.pallet.container.id": record.id, "run.pallet.container.name": record.name},
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path(record.id),
            "resources": resources(host, privileged),
            "maskedPaths": [] if privileged else list(MASKED_PATHS),
            "readonlyPaths": [] if privileged else list(READONLY_PATHS),
        },
    }
    return spec


def _terminal_size() -> dict | None:
    import fcntl
    import struct
    import termios

    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return {"height": rows, "width": cols} if rows and cols else None


def finalize_spec(engine, spec: dict, record) -> dict:
    """Let security profiles and then every ``pallet_spec_amend`` plugin shape the spec; the profiles then ready the files."""
    from pallet.kernel.drivers import FilesContext, SecurityContext
    from pallet.kernel.security import apply_profiles, prepare_files

    host = record.host_config
    ctx = SecurityContext(privileged=bool(host.get("Privileged")), cap_add=list(host.get("CapAdd") or []),
                          cap_drop=list(host.get("CapDrop") or []), user=record.config.get("User") or "",
                          read_only=bool(host.get("ReadonlyRootfs")), container_id=record.id,
                          userns=host.get("UsernsMode") or "", settings=engine.config.section("security"))
    engine.plugins.load("security")
    applied = apply_profiles(engine, spec, ctx, list(host.get("SecurityOpt") or []))
    engine.plugins.broadcast("pallet_spec_amend", spec=spec, container=record)
    prepare_files(engine, spec, FilesContext(engine.root, engine.run_root, engine.storage_remap), applied)
    return spec


def default_mounts(privileged: bool) -> list[dict]:
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]


def etc_mounts(etc_files: dict[str, Path]) -> list[dict]:
    return [{"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rprivate"]}
            for dest, src in etc_files.items()]


def user_mount(mount: dict, source: str | None = None) -> dict:
    """A resolved Docker mount (bind/volume with a host path, or tmpfs) -> an OCI mount."""
    if mount["Type"] == "tmpfs":
        options = ["nosuid", "nodev", "noexec", *(mount.get("TmpfsOptions") or [])]
        if mount.get("ReadOnly"):
            options.append("ro")
        return {"destination": mount["Target"], "type": "tmpfs", "source": "tmpfs", "options": options}
    options = ["rbind", mount.get("Propagation") or "rprivate", "ro" if mount.get("ReadOnly") else "rw"]
    # The security profiles take z/Z out again (kernel.security.take_relabel_requests) before a runtime sees them.
    options += [mount["Relabel"]] if mount.get("Relabel") else []
    return {"destination": mount["Target"], "type": "bind", "source": source or mount["Source"], "options": options}


def rlimits(ulimits: list[dict]) -> list[dict]:
    """containerd's default nofile 1024:1024 plus --ulimit, each capped at this process's hard limit."""
    wanted = {"RLIMIT_NOFILE": (1024, 1024)}
    for item in ulimits:
        name = RLIMIT_NAMES.get(item["Name"])
        if name is None:
            raise UsageError(f"invalid ulimit type: {item['Name']}")
        wanted[name] = (item["Soft"], item["Hard"])
    result = []
    for name, (soft, hard) in wanted.items():
        current_hard = resource.getrlimit(getattr(resource, name))[1]
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard) if hard >= 0 else current_hard
            soft = min(soft, hard) if soft >= 0 else hard
        result.append({"type": name, "soft": soft, "hard": hard})
    return result


def resources(host: dict, privileged: bool) -> dict:
    if privileged:
        devices = [{"allow": True, "access": "rwm"}]
    else:
        devices = [{"allow": False, "access": "rwm"}] + [
            {"allow": True, "type": "c", "major": major, **({"minor": minor} if minor is not None else {}),
             "access": "rwm"} for major, minor in ALLOWED_DEVICES]
    res: dict = {"devices": devices}
    memory: dict = {}
    if host.get("Memory"):
        memory["limit"] = host["Memory"]
        swap = host.get("MemorySwap")
        if swap is None or swap == 0:
            swap = 2 * host["Memory"]  # Docker: swap defaults to the same again
        if _swap_accounting():
            memory["swap"] = swap
    elif host.get("MemorySwap") and host["MemorySwap"] != -1:
        raise UsageError("You should always set the Memory limit when using Memoryswap limit, see usage.")
    if memory:
        res["memory"] = memory
    cpu: dict = {}
    if host.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = host["NanoCpus"] * 100000 // 1_000_000_000
    if host.get("CpuShares"):
        cpu["shares"] = host["CpuShares"]
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit"):
        res["pids"] = {"limit": host["PidsLimit"]}
    if host.get("BlkioWeight"):
        res["blockIO"] = {"weight": host["BlkioWeight"]}
    return res


def _swap_accounting() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or \
        os.path.exists("/sys/fs/cgroup/memory.swap.max")


# --- users from the image's /etc/passwd and /etc/group -------------------------------------

def resolve_user(rootfs: Path, user: str) -> dict:
    """``-u`` as ``name|uid[:group|gid]`` -> uid, gid, supplementary gids and home, like Docker's getent."""
    name, _sep, group = user.partition(":")
    passwd = _read_table(rootfs, "/etc/passwd")
    groups = _read_table(rootfs, "/etc/group")
    uid, gid, home, username = 0, 0, "/", "root"
    if name:
        entry = next((row for row in passwd if row[0] == name or (name.isdigit() and row[2:3] == [name])), None)
        if entry is not None and len(entry) >= 6:
            username, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5]
        elif name.isdigit():
            uid, gid, username = int(name), 0, ""
        else:
            raise PalletError(f"unable to find user {name}: no matching entries in passwd file")
    elif passwd:
        root = next((row for row in passwd if row[0] == "root"), None)
        if root and len(root) >= 6:
            home = root[5]
    if group:
        match = next((row for row in groups if row[0] == group or (group.isdigit() and row[2:3] == [group])), None)
        if match is not None and len(match) >= 3:
            gid = int(match[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise PalletError(f"unable to find group {group}: no matching entries in group file")
    extra = sorted({int(row[2]) for row in groups
                    if len(row) >= 4 and username and username in row[3].split(",") and row[2].isdigit()} - {gid})
    return {"uid": uid, "gid": gid, "additional_gids": extra, "home": home}


def _read_table(rootfs: Path, path: str) -> list[list[str]]:
    from pallet.kernel.rootpath import resolve_in_root

    try:
        text = resolve_in_root(rootfs, path).read_text(errors="replace")
    except (OSError, PalletError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
