"""The mounts storage drivers make: the new mount API key by key, umount, and the d_type check.

The overlay2 driver mounts with ``fsopen``/``fsconfig``/``fsmount``/``move_mount`` and adds
each lower layer with its own ``lowerdir+`` key (Linux 6.8+): the legacy ``mount(2)`` option
string is cut at one page (4096 bytes), which limits how many layers fit in it. The syscalls
themselves are in :mod:`pallet.kernel.linux`.
"""

from __future__ import annotations

import os

from pallet.kernel import linux

MNT_DETACH = linux.MNT_DETACH
supports_d_type = linux.supports_d_type


def _check(result: int, what: str, fs_fd: int) -> int:
    if result < 0:
        err = linux.last_errno()
        detail = _kernel_messages(fs_fd)
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
    fs_fd = linux.fsopen(fstype)
    try:
        for key, value in [("source", source), *options]:
            command = linux.FSCONFIG_SET_FLAG if value is None else linux.FSCONFIG_SET_STRING
            _check(linux.fsconfig(fs_fd, command, key, value), f"fsconfig {key}={value}", fs_fd)
        _check(linux.fsconfig(fs_fd, linux.FSCONFIG_CMD_CREATE), f"creating {fstype} mount", fs_fd)
        mnt_fd = _check(linux.fsmount(fs_fd), "fsmount", fs_fd)
    finally:
        os.close(fs_fd)
    try:
        linux.move_mount(mnt_fd, target)
    finally:
        os.close(mnt_fd)


def umount(target: str, flags: int = 0) -> None:
    linux.umount2(target, flags)
