"""The one thin syscall module: every libc and libseccomp call pallet makes, through cffi.

Namespaces, mounts (also the new mount API), pivot_root, clone, prctl, credentials,
capabilities, seccomp, Landlock and ptys are Python functions here that raise ``OSError``;
the rest of pallet (kernel and plugins alike) reads as Python. Syscall numbers are written
only here. Python's ``os`` module already covers most of the rest (mknod, chdir, execve,
setrlimit via ``resource``). Credentials are changed with raw syscalls, not glibc's wrappers:
glibc broadcasts set*id calls to every thread it knows of, and a child made by :func:`clone`
inherits glibc's view of the parent's threads (the same reason runc's nsexec uses raw syscalls).
The declarations are pre-parsed into ``_ffi.py`` by ``ffi_build.py`` (cffi's out-of-line ABI mode).
"""

from __future__ import annotations

import os

from pallet.kernel._ffi import ffi

libc = ffi.dlopen(None)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17

# OCI namespace type -> (clone flag, /proc/<pid>/ns/ file name)
NAMESPACES = {
    "mount": (CLONE_NEWNS, "mnt"),
    "pid": (CLONE_NEWPID, "pid"),
    "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "user": (CLONE_NEWUSER, "user"),
}
NS_FILES = {flag: name for flag, name in NAMESPACES.values()}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_SYSCALLS = {
    "x86_64": {"clone": 56, "pivot_root": 155, "setresuid": 117, "setresgid": 119, "setgroups": 116, "seccomp": 317},
    "aarch64": {"clone": 220, "pivot_root": 41, "setresuid": 147, "setresgid": 149, "setgroups": 159,
                "seccomp": 277},
}
# Syscalls added after the architectures' tables were unified have one number everywhere.
_COMMON = {"move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "openat2": 437, "mount_setattr": 442,
           "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446}
_NR = {**_SYSCALLS[os.uname().machine], **_COMMON}


def _check(result: int, what: str | None = None) -> int:
    """Raise ``OSError`` for a failed call; ``what`` names the operation in the message."""
    if result < 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}" if what else os.strerror(err))
    return result


def _syscall(name: str, *args) -> int:
    return _check(libc.syscall(ffi.cast("long", _NR[name]), *[ffi.cast("long", a) for a in args]), name)


def _c(text: str | None):
    return ffi.NULL if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(libc.setns(fd, nstype), f"setns {NS_FILES.get(nstype, nstype)}")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    if libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data)) < 0:
        what = f"mount {fstype or source or ''} on {target}" if not flags & MS_REMOUNT else f"remount {target}"
        _check(-1, what.replace("  ", " "))


def umount2(target: str, flags: int = 0) -> None:
    _check(libc.umount2(_c(target), flags), f"umount {target}")


def syncfs(fd: int) -> None:
    _check(libc.syncfs(fd), "syncfs")


def pivot_root(new_root: str, put_old: str) -> None:
    new, old = ffi.new("char[]", os.fsencode(new_root)), ffi.new("char[]", os.fsencode(put_old))
    _check(libc.syscall(ffi.cast("long", _NR["pivot_root"]), new, old), "pivot_root")


def sethostname(name: str) -> None:
    data = name.encode()
    _check(libc.sethostname(data, len(data)), "sethostname")


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(libc.setdomainname(data, len(data)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def setresuid(uid: int) -> None:
    _syscall("setresuid", uid, uid, uid)


def setresgid(gid: int) -> None:
    _syscall("setresgid", gid, gid, gid)


def setgroups(gids: list[int]) -> None:
    array = ffi.new("unsigned int[]", gids or [0])
    _check(libc.syscall(ffi.cast("long", _NR["setgroups"]), ffi.cast("long", len(gids)), array), "setgroups")


SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_filter(program, flags: int = 0) -> None:
    """Install a compiled BPF program (a ``struct sock_fprog *`` made with this module's ffi)."""
    _check(libc.syscall(ffi.cast("long", _NR["seccomp"]), ffi.cast("long", SECCOMP_SET_MODE_FILTER),
                        ffi.cast("long", flags), program), "seccomp")


def capget() -> tuple[int, int, int]:
    """``(effective, permitted, inheritable)`` of this thread as 64-bit masks."""
    header = ffi.new("cap_header *", {"version": _LINUX_CAPABILITY_VERSION_3, "pid": 0})
    data = ffi.new("cap_data[2]")
    _check(libc.capget(header, data), "capget")
    return tuple((getattr(data[1], f) << 32) | getattr(data[0], f) for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = ffi.new("cap_header *", {"version": _LINUX_CAPABILITY_VERSION_3, "pid": 0})
    data = ffi.new("cap_data[2]")
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(libc.capset(header, data), "capset")


_RAW_SYSCALL = []


def load_clone():
    """The GIL-holding ``syscall`` handle :func:`clone` calls (made once; the engine preloads it)."""
    if not _RAW_SYSCALL:
        import ctypes

        raw = ctypes.PyDLL(None, use_errno=True).syscall
        raw.restype = ctypes.c_long
        _RAW_SYSCALL.append(raw)
    return _RAW_SYSCALL[0]


def clone(flags: int) -> int:
    """fork(2) into new namespaces: like ``os.fork()`` but with ``CLONE_NEW*`` ``flags``.

    A raw ``clone`` with no new stack returns twice, as fork does. It is called through
    ``ctypes.PyDLL`` so that the GIL stays held across it (cffi would release it, and a child
    cloned while another thread holds the GIL could never take it back), with Python's own fork
    bookkeeping around it (``PyOS_*Fork*``), as ``os.fork()`` does. The child is PID 1 of a new
    PID namespace when ``CLONE_NEWPID`` is set, and its namespaces are owned by the new user
    namespace when ``CLONE_NEWUSER`` is set, which ``unshare`` cannot give without a second fork.
    glibc's atfork handlers do not run: call it from a process whose other threads (if any) are
    not inside libc's allocator, ideally a single-threaded one.
    """
    import ctypes

    raw = load_clone()
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = raw(ctypes.c_long(_NR["clone"]), ctypes.c_long(flags | SIGCHLD), ctypes.c_long(0), ctypes.c_long(0),
              ctypes.c_long(0), ctypes.c_long(0))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def open_pty() -> tuple[int, str]:
    """Open a pseudo-terminal master from ``/dev/ptmx``; return ``(master_fd, slave_path)``."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    _check(libc.unlockpt(master), "unlockpt")
    buf = ffi.new("char[]", 128)
    if libc.ptsname_r(master, buf, 128) != 0:
        raise OSError(ffi.errno, "ptsname")
    return master, ffi.string(buf).decode()


# --- the new mount API (overlay2 adds each lower layer with its own key) ---------------------

FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100


def _long(*args) -> list:
    return [ffi.cast("long", a) if isinstance(a, int) else a for a in args]


def fsopen(fstype: str) -> int:
    return _check(libc.syscall(*_long(_NR["fsopen"], ffi.new("char[]", fstype.encode()), FSOPEN_CLOEXEC)),
                  f"fsopen({fstype})")


def fsconfig(fs_fd: int, command: int, key: str | None = None, value: str | None = None) -> int:
    """One ``fsconfig`` call; returns its raw result (negative on failure) so the caller can read the fs log."""
    key_c = ffi.new("char[]", key.encode()) if key is not None else ffi.NULL
    value_c = ffi.new("char[]", value.encode()) if value is not None else ffi.NULL
    return libc.syscall(*_long(_NR["fsconfig"], fs_fd, command, key_c, value_c, 0))


def fsmount(fs_fd: int) -> int:
    return libc.syscall(*_long(_NR["fsmount"], fs_fd, FSMOUNT_CLOEXEC, 0))


def move_mount(mnt_fd: int, target: str) -> None:
    _check(libc.syscall(*_long(_NR["move_mount"], mnt_fd, ffi.new("char[]", b""), AT_FDCWD,
                               ffi.new("char[]", os.fsencode(target)), MOVE_MOUNT_F_EMPTY_PATH)),
           f"move_mount to {target}")


MOUNT_ATTR_RDONLY = 0x1
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100


def mount_setattr(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    """Change the attributes of the mount at ``path`` (and, with ``recursive``, of every mount below it).

    The only way to make a whole mount tree read-only in one step: ``MS_REMOUNT|MS_BIND|MS_RDONLY``
    changes the top mount only. Raises ``OSError`` (``ENOSYS`` before Linux 5.12).
    """
    attr = ffi.new("struct mount_attr *", {"attr_set": attr_set, "attr_clr": attr_clr})
    flags = AT_SYMLINK_NOFOLLOW | (AT_RECURSIVE if recursive else 0)
    _check(libc.syscall(*_long(_NR["mount_setattr"], AT_FDCWD, ffi.new("char[]", os.fsencode(path)), flags,
                               attr, ffi.sizeof("struct mount_attr"))), f"mount_setattr {path}")


RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """``openat2(2)``: open ``path`` below ``dir_fd`` with the kernel enforcing ``resolve`` (e.g.
    ``RESOLVE_IN_ROOT``: symlinks and ``..`` resolve as if ``dir_fd`` were ``/``, atomically, so a
    path a container controls cannot lead out of it even when raced). ENOSYS before Linux 5.6."""
    import struct

    how = ffi.new("char[]", struct.pack("=QQQ", flags, mode, resolve))
    return _check(libc.syscall(*_long(_NR["openat2"], dir_fd, ffi.new("char[]", os.fsencode(path)), how, 24)),
                  f"openat2 {path}")


def last_errno() -> int:
    return ffi.errno


def supports_d_type(directory: str) -> bool:
    """Whether readdir on ``directory``'s filesystem fills ``d_type`` (overlayfs needs it)."""
    handle = libc.opendir(os.fsencode(directory))
    if handle == ffi.NULL:
        return False
    try:
        while True:
            entry = libc.readdir(handle)
            if entry == ffi.NULL:
                return False
            if ffi.string(entry.d_name) in (b".", b".."):
                return entry.d_type != 0
    finally:
        libc.closedir(handle)


# --- Landlock --------------------------------------------------------------------------------

LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH, LANDLOCK_RULE_NET_PORT = 1, 2


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    version = libc.syscall(*_long(_NR["landlock_create_ruleset"], ffi.NULL, 0, LANDLOCK_CREATE_RULESET_VERSION))
    return max(version, 0)


def landlock_create_ruleset(handled_fs: int, handled_net: int) -> int:
    attr = ffi.new("struct landlock_ruleset_attr *", {"handled_access_fs": handled_fs,
                                                      "handled_access_net": handled_net})
    # Without network rights, pass only the first field so kernels before ABI 4 accept it.
    size = ffi.sizeof(attr[0]) if handled_net else ffi.sizeof("uint64_t")
    return _check(libc.syscall(*_long(_NR["landlock_create_ruleset"], attr, size, 0)), "landlock_create_ruleset")


def landlock_add_path_rule(ruleset: int, allowed: int, fd: int) -> None:
    attr = ffi.new("struct landlock_path_beneath_attr *", {"allowed_access": allowed, "parent_fd": fd})
    _check(libc.syscall(*_long(_NR["landlock_add_rule"], ruleset, LANDLOCK_RULE_PATH_BENEATH, attr, 0)),
           "landlock_add_rule")


def landlock_add_port_rule(ruleset: int, allowed: int, port: int) -> None:
    attr = ffi.new("struct landlock_net_port_attr *", {"allowed_access": allowed, "port": port})
    _check(libc.syscall(*_long(_NR["landlock_add_rule"], ruleset, LANDLOCK_RULE_NET_PORT, attr, 0)),
           "landlock_add_rule")


def landlock_restrict_self(ruleset: int) -> None:
    _check(libc.syscall(*_long(_NR["landlock_restrict_self"], ruleset, 0)), "landlock_restrict_self")


# --- libseccomp ------------------------------------------------------------------------------

_libseccomp = None


def libseccomp():
    """libseccomp, opened by soname on first use (``ctypes.util.find_library`` would run ldconfig, ~15 ms).

    Raises ``OSError`` when it is not installed.
    """
    global _libseccomp
    if _libseccomp is None:
        _libseccomp = ffi.dlopen("libseccomp.so.2")
    return _libseccomp
