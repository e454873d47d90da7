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


INIT_PATH = "/sbin/docker-init"   # where Docker puts its init, so scripts that look for it find ours too
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit")


def cgroups_path(cid: str, parent: str | None = None) -> str:
    """``/pallet/<id>``, or ``<parent>/<id>`` for --cgroup-parent (a systemd ``x.slice`` parent as Docker nests it)."""
    if not parent:
        return f"/pallet/{cid}"
    return "/" + "/".join(p for p in parent.split("/") if p) + f"/{cid}"


def build_spec(record, rootfs: Path, etc_files: dict[str, Path], netns_path: str | None, mounts: list[dict],
               links=None) -> dict:
    """The spec for ``record``: ``etc_files`` maps /etc/hosts etc. to host files; ``mounts`` are resolved user
    mounts; ``links`` (:class:`pallet.kernel.runlinks.StartLinks`) what it takes from other containers."""
    from pallet.kernel import spec_linux

    config, host = record.config, record.host_config
    privileged = bool(host.get("Privileged"))
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not args:
        raise PalletError("No command specified")
    init_mounts = []
    if host.get("Init"):
        init_mounts = [{"destination": INIT_PATH, "type": "bind", "source": init_binary(),
                        "options": ["bind", "ro", "nosuid", "nodev"]}]
        args = [INIT_PATH, "--", *args]
    user = resolve_user(rootfs, config.get("User") or "")
    user["additional_gids"] = sorted(set(user["additional_gids"]) | set(group_ids(rootfs, host.get("GroupAdd") or [])))
    env = list(links.env if links else []) + list(config.get("Env") or [])
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
    size = (_console_size(host) or terminal_size()) if process["terminal"] else None
    if size:
        process["consoleSize"] = size  # set before the process starts, so its first `stty size` is right
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(host["OomScoreAdj"])
    namespaces = spec_linux.namespaces(host, record.network_mode, netns_path, links)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": bool(host.get("ReadonlyRootfs"))},
        "mounts": spec_linux.shm_mount(default_mounts(privileged), host, links) + etc_mounts(etc_files)
                  + init_mounts + mounts,
        "annotations": {**(host.get("Annotations") or {}),
                        "run.pallet.container.id": record.id, "run.pallet.container.name": record.name},
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path(record.id, host.get("CgroupParent")),
            "resources": resources(host, privileged),
            "maskedPaths": [] if privileged else list(MASKED_PATHS),
            "readonlyPaths": [] if privileged else list(READONLY_PATHS),
        },
    }
    if any(n["type"] == "uts" and "path" not in n for n in namespaces):   # a joined one keeps its name
        spec["hostname"] = config.get("Hostname", "")
        if config.get("Domainname"):
            spec["domainname"] = config["Domainname"]
    if host.get("Sysctls"):
        spec["linux"]["sysctl"] = dict(host["Sysctls"])
    devices = spec_linux.devices(host.get("Devices") or [])
    if devices:
        spec["linux"]["devices"] = [d for d, _rule in devices]
        spec["linux"]["resources"]["devices"] += [rule for _d, rule in devices]
    spec["linux"]["resources"]["devices"] += [spec_linux.cgroup_rule(r) for r in host.get("DeviceCgroupRules") or []]
    return spec


def init_binary() -> str:
    """The static init bound into the container for --init: tini's static build (Debian ``tini``) or catatonit."""
    found = next((path for path in INIT_CANDIDATES if os.path.exists(path)), None)
    if found is None:
        raise PalletError("--init: no static init binary found (install tini, which ships /usr/bin/tini-static)")
    return found


def group_ids(rootfs: Path, groups: list[str]) -> list[int]:
    """--group-add NAME|GID, names looked up in the image's /etc/group (as Docker does)."""
    table = _read_table(rootfs, "/etc/group")
    ids = []
    for group in groups:
        row = next((r for r in table if r[0] == group and len(r) >= 3), None)
        if row is not None and row[2].isdigit():
            ids.append(int(row[2]))
        elif (group.isascii() and group.isdigit()):
            ids.append(int(group))
        else:
            raise PalletError(f"Unable to find group {group}: no matching entries in group file")
    return ids


def _console_size(host: dict) -> dict | None:
    """HostConfig's ``ConsoleSize`` (``[height, width]``, what an API client gave at create), if set."""
    size = host.get("ConsoleSize")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return {"height": size[0], "width": size[1]}
    return None


def terminal_size() -> dict | None:
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
    """containerd's default nofile 1024:1024 plus --ulimit, each capped at this process's hard limit
    (without CAP_SYS_RESOURCE it cannot be raised; :func:`capped_ulimits` names the ones cut)."""
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


def capped_ulimits(ulimits: list[dict]) -> list[str]:
    """The asked-for limits above this host's hard limit, each as a warning line."""
    lines = []
    for item in ulimits:
        name = RLIMIT_NAMES.get(item["Name"])
        if name is None:
            raise UsageError(f"invalid ulimit type: {item['Name']}")
        current_hard = resource.getrlimit(getattr(resource, name))[1]
        if current_hard != resource.RLIM_INFINITY and (item["Hard"] < 0 or item["Hard"] > current_hard):
            lines.append(f"--ulimit {item['Name']}={item['Soft']}:{item['Hard']} is capped at this host's hard limit "
                         f"{current_hard} (raising it needs CAP_SYS_RESOURCE)")
    return lines


def resources(host: dict, privileged: bool) -> dict:
    from pallet.kernel import spec_linux

    if privileged:
        devices = [{"allow": True, "access": "rwm"}]
    else:
        # As Docker: mknod of any node is allowed (opening it is not), so a --device node with less than
        # "m" access can still be created by the runtime once the process is in its cgroup.
        devices = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "m"},
                   {"allow": True, "type": "b", "access": "m"}] + [
            {"allow": True, "type": "c", "major": major, **({"minor": minor} if minor is not None else {}),
             "access": "rwm"} for major, minor in ALLOWED_DEVICES]
    res: dict = {"devices": devices}
    memory: dict = {}
    if host.get("Memory"):
        memory["limit"] = host["Memory"]
        swap = host.get("MemorySwap")
        if swap is None or swap == 0:
            swap = 2 * host["Memory"]  # Docker: swap defaults to the same again
        elif 0 < swap < host["Memory"]:
            raise UsageError("Minimum memoryswap limit should be larger than memory limit, see usage.")
        if _swap_accounting():
            memory["swap"] = swap
    elif host.get("MemorySwap") and host["MemorySwap"] != -1:
        raise UsageError("You should always set the Memory limit when using Memoryswap limit, see usage.")
    if host.get("MemoryReservation"):
        memory["reservation"] = host["MemoryReservation"]
    if host.get("MemorySwappiness") is not None and host["MemorySwappiness"] >= 0:
        memory["swappiness"] = host["MemorySwappiness"]
    if host.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        res["memory"] = memory
    cpu: dict = {}
    if host.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = host["NanoCpus"] * 100000 // 1_000_000_000
    for key, field_name in (("CpuPeriod", "period"), ("CpuQuota", "quota"), ("CpuRealtimePeriod", "realtimePeriod"),
                            ("CpuRealtimeRuntime", "realtimeRuntime"), ("CpuShares", "shares"),
                            ("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        if host.get(key):
            cpu[field_name] = host[key]
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit"):
        res["pids"] = {"limit": host["PidsLimit"]}
    block_io = spec_linux.block_io(host)
    if block_io:
        res["blockIO"] = block_io
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
        entry = next((row for row in passwd if row[0] == name or ((name.isascii() and name.isdigit()) and row[2:3] == [name])), None)
        if entry is not None and len(entry) >= 6:
            username, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5]
        elif (name.isascii() and name.isdigit()):
            uid, gid, username = int(name), 0, ""
        else:
            raise PalletError(f"unable to find user {name}: no matching entries in passwd file")
    elif passwd:
        root = next((row for row in passwd if row[0] == "root"), None)
        if root and len(root) >= 6:
            home = root[5]
    if group:
        match = next((row for row in groups if row[0] == group or ((group.isascii() and group.isdigit()) and row[2:3] == [group])), None)
        if match is not None and len(match) >= 3:
            gid = int(match[2])
        elif (group.isascii() and group.isdigit()):
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
