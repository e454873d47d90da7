"""pyzfs's ``libzfs_core`` API, the part pallet's zfs driver uses, implemented by running the zfs commands.

Same function names, signatures, byte-string names and exception classes (``.exceptions``) as pyzfs
(openzfs ``contrib/pyzfs``), so the driver runs unchanged on the real ``libzfs_core`` where it
imports. Hosts with only zfs-fuse (no ``libzfs_core`` library) get this one instead.

Property values follow pyzfs: ``bytes`` for string properties (``mountpoint``), ``int`` for numeric
and index properties (``quota``, ``canmount`` where 2 is ``noauto``).

Where the commands cannot keep pyzfs's promises, this module says so rather than pretend:
``lzc_snapshot`` of several snapshots runs one command each and destroys the made ones if a later
one fails; ``lzc_destroy_snaps`` destroys one by one, so a failure can leave earlier ones destroyed;
``lzc_destroy`` lets ``zfs destroy`` unmount a mounted dataset, where libzfs_core would answer busy.

What pyzfs itself lacks (pools, property reads, snapshot listing, mounting) is in ``.extension``.
"""

from __future__ import annotations

import errno

from . import exceptions
from ._commands import Failed, check_name, error, run

__all__ = ["exceptions", "is_supported", "lzc_create", "lzc_clone", "lzc_snapshot", "lzc_snap", "lzc_destroy_snaps",
           "lzc_destroy", "lzc_exists", "lzc_rename"]

# Index properties take numbers in libzfs_core's nvlists; the commands want their names.
_INDEX_VALUES = {b"canmount": {0: "off", 1: "on", 2: "noauto"}}


def _property_args(name: bytes, props) -> list[str]:
    args = []
    for key, value in (props or {}).items():
        if not isinstance(key, bytes):
            raise TypeError(f"a property name must be bytes, not {type(key).__name__}")
        if isinstance(value, bool) or not isinstance(value, (bytes, int)):
            raise exceptions.PropertyInvalid(name)
        if isinstance(value, int):
            names = _INDEX_VALUES.get(key)
            if names is not None and value not in names:
                raise exceptions.PropertyInvalid(name)
            text = names[value] if names is not None else str(value)
        else:
            text = value.decode()
        args += ["-o", f"{key.decode()}={text}"]
    return args


def lzc_create(name, ds_type="zfs", props=None, key=None):
    """Create filesystem ``name``: ``FilesystemExists``, ``ParentNotFound``, ``PropertyInvalid``, ``NameInvalid``."""
    text = check_name(name)
    if ds_type != "zfs":
        raise exceptions.ZFSGenericError(errno.EINVAL, name, f"the zfs commands backend creates filesystems, not {ds_type}")
    if key:
        raise exceptions.ZFSGenericError(errno.ENOTSUP, name, "zfs-fuse has no encryption")
    try:
        run("zfs", "create", *_property_args(name, props), text)
    except Failed as failure:
        raise error(failure, name, what="Failed to create filesystem") from None


def lzc_clone(name, origin, props=None):
    """Clone snapshot ``origin`` as ``name``: ``FilesystemExists``, ``DatasetNotFound`` (origin or parent)."""
    text, origin_text = check_name(name), check_name(origin, snapshot=True)
    try:
        run("zfs", "clone", *_property_args(name, props), origin_text, text)
    except Failed as failure:
        raise error(failure, name, missing=exceptions.DatasetNotFound, parent_missing=exceptions.DatasetNotFound,
                    what="Failed to create clone") from None


def lzc_snapshot(snaps, props=None):
    """Create all ``snaps`` or none; any failure is a ``SnapshotFailure`` listing the individual errors."""
    names = [check_name(snap, snapshot=True) for snap in snaps]
    made = []
    try:
        for snap, text in zip(snaps, names):
            try:
                run("zfs", "snapshot", *_property_args(snap, props), text)
            except Failed as failure:
                raise exceptions.SnapshotFailure([error(
                    failure, snap, exists=exceptions.SnapshotExists, what="Failed to create snapshot")], 0) from None
            made.append(text)
    except exceptions.ZFSError:
        for text in made:
            try:
                run("zfs", "destroy", text)
            except Failed:
                pass  # best effort: the failure being raised is the one the caller must see
        raise


lzc_snap = lzc_snapshot


def lzc_destroy_snaps(snaps, defer):
    """Destroy ``snaps`` (missing ones are ignored); ``SnapshotDestructionFailure`` lists what stayed and why."""
    failures = []
    for snap in snaps:
        text = check_name(snap, snapshot=True)
        try:
            run("zfs", "destroy", *(["-d"] if defer else []), text)
        except Failed as failure:
            err = error(failure, snap, missing=exceptions.SnapshotNotFound, what="Failed to destroy snapshot")
            if not isinstance(err, exceptions.SnapshotNotFound):
                failures.append(err)
    if failures:
        raise exceptions.SnapshotDestructionFailure(failures, 0)


def lzc_destroy(name):
    """Destroy dataset ``name``: ``FilesystemNotFound``; ``DatasetBusy`` while in use or while it has snapshots."""
    text = check_name(name)
    try:
        run("zfs", "destroy", text)
    except Failed as failure:
        raise error(failure, name, what="Failed to destroy dataset") from None


def lzc_exists(name):
    """Whether a filesystem, volume or snapshot ``name`` exists."""
    try:
        text = check_name(name, snapshot=b"@" in name)
    except exceptions.NameInvalid:
        return False
    try:
        run("zfs", "list", "-H", "-o", "name", "-t", "all", text)
    except Failed as failure:
        err = error(failure, name)
        if isinstance(err, exceptions.DatasetNotFound):
            return False
        raise err from None
    return True


def lzc_rename(source, target):
    """Rename dataset ``source`` to ``target``: ``FilesystemNotFound`` (source), ``FilesystemExists`` (target)."""
    source_text, target_text = check_name(source), check_name(target)
    try:
        run("zfs", "rename", source_text, target_text)
    except Failed as failure:
        err = error(failure, source, what="Failed to rename dataset")
        if isinstance(err, exceptions.FilesystemExists):
            err = exceptions.FilesystemExists(target)
            err.output = failure.output
        raise err from None


def is_supported(func):
    """Whether this backend implements ``func``, one of pyzfs's ``lzc_*`` functions (ValueError for others)."""
    name = getattr(func, "__name__", "")
    if not name.startswith("lzc_"):
        raise ValueError(f"{name or func!r} is not a libzfs_core API function")
    return name in __all__
