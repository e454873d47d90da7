"""The exception classes of pyzfs's ``libzfs_core.exceptions`` that the zfs driver meets, same names and errnos.

Each class carries pyzfs's ``errno``, ``message`` and the offending ``name`` (bytes), and prints as pyzfs
does (``[Errno 2] Filesystem not found: 'tank/x'``). Compound failures (``SnapshotFailure``,
``SnapshotDestructionFailure``) hold the per-snapshot errors in ``errors``. Errors raised by the
command backend also keep what zfs printed in ``output``, which pyzfs's classes do not have.
"""

from __future__ import annotations

import errno as _errno


class ZFSError(Exception):
    errno: int | None = None
    message: str | None = None
    name: bytes | None = None
    output: str = ""          # the zfs command's own words (command backend only)

    def __str__(self) -> str:
        text = f"[Errno {self.errno}] {self.message}"
        if self.name is not None:
            text += f": '{_text(self.name)}'"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.errno!r}, {self.message!r})"


def _text(name) -> str:
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


class _Named(ZFSError):
    """An error about one dataset: pyzfs's classes take just the name."""

    def __init__(self, name):
        self.name = name


class ZFSGenericError(ZFSError):
    def __init__(self, errno, name, message):
        self.errno, self.name, self.message = errno, name, message


class MultipleOperationsFailure(ZFSError):
    def __init__(self, errors, suppressed_count):
        self.errors = errors
        self.suppressed_count = suppressed_count
        self.errno = errors[0].errno  # pyzfs reports the first individual error's code

    def __str__(self) -> str:
        return f"{ZFSError.__str__(self)}, {len(self.errors)} errors included, {self.suppressed_count} suppressed"


class DatasetNotFound(_Named):
    errno, message = _errno.ENOENT, "Dataset not found"


class FilesystemNotFound(DatasetNotFound):
    message = "Filesystem not found"


class SnapshotNotFound(DatasetNotFound):
    message = "Snapshot not found"


class ParentNotFound(_Named):
    errno, message = _errno.ENOENT, "Parent not found"


class DatasetExists(_Named):
    errno, message = _errno.EEXIST, "Dataset already exists"


class FilesystemExists(DatasetExists):
    message = "Filesystem already exists"


class SnapshotExists(DatasetExists):
    message = "Snapshot already exists"


class SnapshotIsCloned(_Named):
    errno, message = _errno.EEXIST, "Snapshot is cloned"


class DatasetBusy(_Named):
    errno, message = _errno.EBUSY, "Dataset is busy"


class PropertyInvalid(_Named):
    errno, message = _errno.EINVAL, "Invalid property or property value"


class NameInvalid(_Named):
    errno, message = _errno.EINVAL, "Invalid name"


class FilesystemNameInvalid(NameInvalid):
    message = "Invalid name for filesystem or volume"


class SnapshotNameInvalid(NameInvalid):
    message = "Invalid name for snapshot"


class PoolNotFound(_Named):
    errno, message = _errno.EXDEV, "No such pool"


class SnapshotFailure(MultipleOperationsFailure):
    message = "Creation of snapshot(s) failed for one or more reasons"


class SnapshotDestructionFailure(MultipleOperationsFailure):
    message = "Destruction of snapshot(s) failed for one or more reasons"
