"""Thin ctypes layer over the mount syscalls the storage drivers need (new mount API, umount2).

The overlay2 driver mounts with ``fsopen``/``fsconfig``/``fsmount``/``move_mount`` and adds
each lower layer with its own ``lowerdir+`` key (Linux 6.8+): the legacy ``mount(2)`` option
string is cut at one page (4096 bytes), which limits how many layers fit in it.
"""

from __future__ import annotations

import ctypes
import os

# Same numbers on every architecture: these syscalls came after the tables were unified.
_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 429, 430, 431, 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_FSMOUNT_CLOEXEC = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str, context_fd: int | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        detail = _kernel_messages(context_fd) if context_fd is not None else ""
        raise OSError(err, f"{what}: {os.strerror(err)}" + (f" ({detail})" if detail else ""))
    return result


def _kernel_messages(fd: int) -> str:
    """The filesystem context's log ("e overlayfs: …" lines) explains most fsconfig failures."""
    lines = []
    while True:
        try:
            line = os.read(fd, 4096)
        except OSError:
            break
        if not line:
            break
        lines.append(line.decode(errors="replace").strip())
    return "; ".join(lines)


def mount_fs(fstype: str, target: str, options: list[tuple[str, str | None]], source: str = "none") -> None:
    """Create a ``fstype`` mount configured key by key and attach it at ``target``.

    ``options`` is a list of ``(key, value)``; a None value sets a flag. Keys may repeat.
    """
    fs_fd = _check(_libc.syscall(_SYS_FSOPEN, fstype.encode(), _FSOPEN_CLOEXEC), f"fsopen({fstype})")
    try:
        for key, value in [("source", source), *options]:
            if value is None:
                result = _libc.syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
            else:
                result = _libc.syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
            _check(result, f"fsconfig {key}={value}", fs_fd)
        _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0),
               f"creating {fstype} mount", fs_fd)
        mnt_fd = _check(_libc.syscall(_SYS_FSMOUNT, fs_fd, _FSMOUNT_CLOEXEC, 0), "fsmount", fs_fd)
    finally:
        os.close(fs_fd)
    try:
        _check(_libc.syscall(_SYS_MOVE_MOUNT, mnt_fd, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
               f"move_mount to {target}")
    finally:
        os.close(mnt_fd)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def supports_d_type(directory: str) -> bool:
    """Whether readdir on ``directory``'s filesystem fills ``d_type`` (overlayfs needs it)."""
    _libc.opendir.restype = ctypes.c_void_p
    _libc.readdir.restype = ctypes.POINTER(_Dirent)
    _libc.readdir.argtypes = [ctypes.c_void_p]
    _libc.closedir.argtypes = [ctypes.c_void_p]
    handle = _libc.opendir(directory.encode())
    if not handle:
        return False
    try:
        while True:
            entry = _libc.readdir(handle)
            if not entry:
                return False
            if entry.contents.d_name in (b".", b".."):
                return entry.contents.d_type != 0
    finally:
        _libc.closedir(handle)
