"""The container's filesystem view: the spec's mounts, a minimal /dev, pivot_root, masked and read-only paths.

``plan_mounts`` runs in the parent (pure parsing); the other functions run in the container's
child process, between ``clone`` and ``execve``, inside its new mount namespace.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from pallet.kernel import linux

# OCI mount option -> (flags to set, flags to clear)
_FLAGS = {
    "ro": (linux.MS_RDONLY, 0), "rw": (0, linux.MS_RDONLY),
    "nosuid": (linux.MS_NOSUID, 0), "suid": (0, linux.MS_NOSUID),
    "nodev": (linux.MS_NODEV, 0), "dev": (0, linux.MS_NODEV),
    "noexec": (linux.MS_NOEXEC, 0), "exec": (0, linux.MS_NOEXEC),
    "sync": (linux.MS_SYNCHRONOUS, 0), "async": (0, linux.MS_SYNCHRONOUS),
    "dirsync": (linux.MS_DIRSYNC, 0), "remount": (linux.MS_REMOUNT, 0),
    "mand": (linux.MS_MANDLOCK, 0), "nomand": (0, linux.MS_MANDLOCK),
    "noatime": (linux.MS_NOATIME, 0), "atime": (0, linux.MS_NOATIME),
    "nodiratime": (linux.MS_NODIRATIME, 0), "diratime": (0, linux.MS_NODIRATIME),
    "relatime": (linux.MS_RELATIME, 0), "norelatime": (0, linux.MS_RELATIME),
    "strictatime": (linux.MS_STRICTATIME, 0), "nostrictatime": (0, linux.MS_STRICTATIME),
    "nosymfollow": (linux.MS_NOSYMFOLLOW, 0), "symfollow": (0, linux.MS_NOSYMFOLLOW),
    "bind": (linux.MS_BIND, 0), "rbind": (linux.MS_BIND | linux.MS_REC, 0),
}
PROPAGATION = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
# statvfs f_flag bits a bind remount must keep (the kernel locks them inside a user namespace)
_STATVFS_KEEP = ((1, linux.MS_RDONLY), (2, linux.MS_NOSUID), (4, linux.MS_NODEV), (8, linux.MS_NOEXEC),
                 (1024, linux.MS_NOATIME), (2048, linux.MS_NODIRATIME), (4096, linux.MS_RELATIME))
# The devices every container gets (as runc does), beyond ``linux.devices``.
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
                   ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))


@dataclass
class Mount:
    destination: str
    type: str
    source: str
    flags: int = 0
    propagation: int = 0
    data: str = ""

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & linux.MS_BIND)


@dataclass
class Device:
    path: str
    kind: str  # "c", "b" or "p"
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class RootfsPlan:
    rootfs: str
    readonly: bool = False
    propagation: int = linux.MS_SLAVE | linux.MS_REC
    mounts: list[Mount] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    cgroup_dirs: dict[str, str] = field(default_factory=dict)  # controller name -> host dir of the container
    in_userns: bool = False


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """OCI mount options -> ``(flags, propagation, data)``."""
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in _FLAGS:
            set_bits, clear_bits = _FLAGS[option]
            flags = (flags | set_bits) & ~clear_bits
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        elif option not in ("tmpcopyup", "idmap", "ridmap"):
            data.append(option)
    return flags, propagation, ",".join(data)


def plan_mounts(spec: dict, bundle: str) -> RootfsPlan:
    root = spec.get("root") or {}
    rootfs = root.get("path", "rootfs")
    rootfs = os.path.realpath(rootfs if os.path.isabs(rootfs) else os.path.join(bundle, rootfs))
    linux_spec = spec.get("linux") or {}
    plan = RootfsPlan(rootfs, readonly=bool(root.get("readonly")))
    if linux_spec.get("rootfsPropagation"):
        plan.propagation = PROPAGATION[linux_spec["rootfsPropagation"]]
    for entry in spec.get("mounts") or []:
        flags, propagation, data = parse_options(entry.get("options") or [])
        kind = entry.get("type") or ("bind" if flags & linux.MS_BIND else "")
        if kind == "bind":
            flags |= linux.MS_BIND
        source = entry.get("source") or kind
        if flags & linux.MS_BIND and not os.path.isabs(source):
            source = os.path.join(bundle, source)
        plan.mounts.append(Mount(entry["destination"], kind, source, flags, propagation, data))
    plan.devices = [Device(p, "c", major, minor) for p, major, minor in DEFAULT_DEVICES]
    for dev in linux_spec.get("devices") or []:
        plan.devices = [d for d in plan.devices if d.path != dev["path"]]
        plan.devices.append(Device(dev["path"], dev.get("type", "c"), dev.get("major", 0), dev.get("minor", 0),
                                   dev.get("fileMode", 0o666), dev.get("uid", 0), dev.get("gid", 0)))
    plan.masked = list(linux_spec.get("maskedPaths") or [])
    plan.readonly_paths = list(linux_spec.get("readonlyPaths") or [])
    return plan


def secure_join(root: str, path: str) -> str:
    """``root/path`` with every symlink resolved as if ``root`` were ``/`` (no escape from the rootfs)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, "too many symlinks", path)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def _make_target(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _kept_flags(path: str) -> int:
    bits = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_KEEP if bits & st and ms != linux.MS_RDONLY)


def remount_bind(path: str, flags: int) -> None:
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | flags | _kept_flags(path))


def _submounts(path: str) -> list[str]:
    """Mount points strictly below ``path``, parents before children (mountinfo order)."""
    prefix, found = path.rstrip("/") + "/", []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            mountpoint = line.split(" - ")[0].split()[4].replace("\\040", " ")
            if mountpoint.startswith(prefix) and mountpoint not in found:
                found.append(mountpoint)
    return found


def _readonly_below(target: str) -> None:
    """A read-only rbind must leave its submounts read-only too (``-v /:/host:ro`` and /host/proc).

    ``remount_bind`` changes the top mount only; ``mount_setattr(AT_RECURSIVE)`` changes the whole
    tree at once, as Docker >= 25 does. Kernels before 5.12 lack it: remount each submount instead.
    """
    try:
        linux.mount_setattr(target, linux.MOUNT_ATTR_RDONLY)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    for sub in _submounts(target):
        try:
            remount_bind(sub, linux.MS_RDONLY)
        except FileNotFoundError:      # a submount shadowed or gone since mountinfo was read
            pass


def _mount_one(plan: RootfsPlan, m: Mount) -> None:
    target = secure_join(plan.rootfs, m.destination)
    if m.type == "cgroup":
        _mount_cgroup_v1(plan, m, target) if plan.cgroup_dirs else _mount_plain(m, target, "cgroup2")
    elif m.is_bind:
        _make_target(target, os.path.isdir(m.source))
        linux.mount(m.source, target, None, m.flags & (linux.MS_BIND | linux.MS_REC))
        extra = m.flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if extra:
            remount_bind(target, extra)
        if m.flags & linux.MS_REC and m.flags & linux.MS_RDONLY:
            _readonly_below(target)
    elif m.type == "sysfs":
        try:
            _mount_plain(m, target, "sysfs")
        except PermissionError:
            # A user namespace may not mount sysfs for a network namespace it does not own (runc does the same).
            linux.mount("/sys", target, None, linux.MS_BIND | linux.MS_REC)
            remount_bind(target, m.flags & ~linux.MS_REC)
    else:
        _mount_plain(m, target, m.type)
    if m.propagation:
        linux.mount(None, target, None, m.propagation)


def _mount_plain(m: Mount, target: str, fstype: str) -> None:
    _make_target(target, True)
    linux.mount(m.source, target, fstype, m.flags, m.data or None)


def _mount_cgroup_v1(plan: RootfsPlan, m: Mount, target: str) -> None:
    """v1 has one hierarchy per controller: a tmpfs holding a bind of the container's own cgroup of each."""
    _make_target(target, True)
    linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755")
    for name, host_dir in plan.cgroup_dirs.items():
        sub = os.path.join(target, name)
        os.mkdir(sub)
        linux.mount(host_dir, sub, None, linux.MS_BIND | linux.MS_REC)
        remount_bind(sub, (m.flags & linux.MS_RDONLY) | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if m.flags & linux.MS_RDONLY:
        remount_bind(target, linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def _create_devices(plan: RootfsPlan) -> None:
    for dev in plan.devices:
        target = secure_join(plan.rootfs, dev.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        if plan.in_userns:
            # mknod is refused in a user namespace: bind the host's node instead.
            _make_target(target, False)
            linux.mount(dev.path, target, None, linux.MS_BIND)
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.kind]
        os.mknod(target, kind | (dev.mode & 0o7777), os.makedev(dev.major, dev.minor))
        os.chmod(target, dev.mode & 0o7777)
        os.chown(target, dev.uid, dev.gid)


def _dev_symlinks(dev: str) -> None:
    links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
             ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for target, name in links:
        path = os.path.join(dev, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)


def _parent_mount_private(path: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared (rootfsPropagation "rshared")."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split(" - ")[0].split()
            mountpoint = fields[4].replace("\\040", " ")
            inside = path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best):
                best, shared = mountpoint, any(f.startswith("shared:") for f in fields[6:])
    if shared:
        linux.mount(None, best, None, linux.MS_PRIVATE)


def prepare(plan: RootfsPlan) -> None:
    """Mount everything under the rootfs and pivot into it (mount namespace already unshared)."""
    linux.mount(None, "/", None, plan.propagation)
    _parent_mount_private(plan.rootfs)
    linux.mount(plan.rootfs, plan.rootfs, None, linux.MS_BIND | linux.MS_REC)
    dev_is_mounted = False
    for m in plan.mounts:
        _mount_one(plan, m)
        dev_is_mounted = dev_is_mounted or m.destination.rstrip("/") == "/dev"
    if dev_is_mounted:
        _create_devices(plan)
        _dev_symlinks(secure_join(plan.rootfs, "/dev"))
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(plan.rootfs)
        linux.pivot_root(".", ".")
        # The old root now sits on top of the new one. From inside it (as runc does), make it rslave, so that
        # detaching it tells the host nothing, and detach it. From the new root, "." names the new root
        # itself: rslave there would turn the container's own shared mounts (bind-propagation=rshared) private.
        os.fchdir(old_root)
        linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
        linux.umount2(".", linux.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")
    if plan.propagation & linux.MS_SHARED:
        linux.mount(None, "/", None, plan.propagation)  # the bind of the rootfs was made private above


def finalize(plan: RootfsPlan) -> None:
    """After pivot_root and sysctls: read-only and masked paths, then the read-only rootfs."""
    for path in plan.readonly_paths:
        try:
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
        except FileNotFoundError:
            continue
        remount_bind(path, linux.MS_RDONLY | linux.MS_REC)
    for path in plan.masked:
        try:
            if os.path.isdir(path):
                linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY, None)
            else:
                linux.mount("/dev/null", path, None, linux.MS_BIND)
        except FileNotFoundError:
            continue
    if plan.readonly:
        remount_bind("/", linux.MS_RDONLY)
