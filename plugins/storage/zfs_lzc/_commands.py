"""Running one zfs/zpool command and turning its failure into the pyzfs exception that names the cause.

zfs-fuse explains a failure only in words (``cannot destroy 'tank/a': dataset is busy``), so the
mapping reads them; what no rule recognises stays a ``ZFSGenericError`` carrying zfs's text.
"""

from __future__ import annotations

import errno
import subprocess

from . import exceptions as exc

TIMEOUT = 60
# The components pyzfs accepts in a name; a pool starts with a letter, so no name reads as an option.
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.: ")


class Failed(Exception):
    """A command exited non-zero; ``output`` is what it printed."""

    def __init__(self, output: str):
        super().__init__(output)
        self.output = output


def run(*args: str) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise exc.ZFSGenericError(errno.ENOENT, None, f"the {args[0]} command is not installed") from None
    except subprocess.TimeoutExpired:
        raise exc.ZFSGenericError(errno.ETIMEDOUT, None, f"{' '.join(args[:2])} timed out after {TIMEOUT}s") from None
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        # zfs explains on the first line and may list datasets after it ("use '-R' to destroy …").
        raise Failed("; ".join(line.strip() for line in lines) or f"exit {result.returncode}")
    return result.stdout


def check_name(name, *, snapshot: bool = False) -> str:
    """pyzfs takes names as bytes; check them as it does and give the command its text."""
    if not isinstance(name, bytes):
        raise TypeError(f"a zfs name must be bytes, not {type(name).__name__}")
    dataset, at, snap = name.partition(b"@")
    components = dataset.split(b"/") + ([snap] if snapshot else [])
    valid = (bool(at) == snapshot and dataset[:1].isalpha()
             and all(part and set(part) <= _NAME_BYTES for part in components))
    if not valid:
        raise (exc.SnapshotNameInvalid if snapshot else exc.FilesystemNameInvalid)(name)
    return name.decode()


def error(failure: Failed, name, *, missing=exc.FilesystemNotFound, exists=exc.FilesystemExists,
          parent_missing=exc.ParentNotFound, what: str = "Failed") -> exc.ZFSError:
    """The pyzfs exception for what zfs said; ``missing``/``exists``/``parent_missing`` differ per call, as in pyzfs."""
    text = failure.output
    lower = text.lower()
    if "dataset is busy" in lower or "target is busy" in lower or "resource busy" in lower:
        err = exc.DatasetBusy(name)
    elif "parent does not exist" in lower:
        err = parent_missing(name)
    elif "does not exist" in lower:
        err = missing(name)
    elif "already exists" in lower:
        err = exists(name)
    elif "dependent clones" in lower:
        err = exc.SnapshotIsCloned(name)
    elif "has children" in lower:
        # zfs lists what is in the way; ZFS itself answers EBUSY for snapshots, EEXIST for child datasets.
        in_the_way = text.split("following datasets:", 1)[-1]
        err = exc.DatasetBusy(name) if "@" in in_the_way else exc.ZFSGenericError(errno.EEXIST, name, what)
    elif "no such pool" in lower:
        err = exc.PoolNotFound(name)
    elif "property" in lower or "must be one of" in lower or "numeric value" in lower:
        err = exc.PropertyInvalid(name)
    else:
        err = exc.ZFSGenericError(errno.EIO, name, what)
    err.output = text
    return err
