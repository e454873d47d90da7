"""Small filesystem helpers for crash-safe state: atomic writes and directory locks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part.

    ``durable=False`` skips the fsyncs, for files that need not survive a reboot (runtime
    state under the run root): still atomic for readers, just not flushed to disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_owned(path: Path, data: bytes, owner: tuple[int, int], mode: int, exclusive: bool = True) -> None:
    """Write ``data`` to ``path`` (a new file with ``exclusive``, never through a symlink), then give it
    ``owner`` and ``mode``: it is 0600 and root's until the content is whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC), 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, value, mode: int = 0o644, durable: bool = True) -> None:
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode, durable)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path) -> None:
    """Write back everything dirty on the filesystem holding ``path`` (``syncfs(2)``): one call makes a
    whole unpacked layer durable, where an fsync per file would cost one disk flush each."""
    from pallet.kernel import linux   # the syscall module; imported only by the commands that unpack

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        linux.syncfs(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"syncfs {path}: {os.strerror(exc.errno)}") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, shared: bool = False):
    """Hold an ``flock`` on ``path`` (created if missing) for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
