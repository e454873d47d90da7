"""The naive diff fallback: mount a layer and its parent, compare the trees, tar the changes.

Used by ``StorageDriver.diff/changes/apply_diff/diff_size`` for drivers that only know how to
create and mount layers (vfs, btrfs, zfs, third-party drivers), as moby's NaiveDiffDriver.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import BinaryIO, Iterable, Iterator

from pallet.kernel.drivers.base import Change
from pallet.kernel.storage import archive


@contextlib.contextmanager
def mounted(driver, layer_id: str | None):
    """``driver.get`` for the block, always balanced by ``put``; yields None for no layer."""
    if layer_id is None:
        yield None
        return
    root = driver.get(layer_id)
    try:
        yield str(root)
    finally:
        driver.put(layer_id)


def compare(old_root: str | None, new_root: str) -> list[Change]:
    """Changes from the tree at ``old_root`` (None: empty) to the tree at ``new_root``, sorted by path."""
    out: list[Change] = []
    _compare_dir(old_root, new_root, "", out)
    out.sort(key=lambda change: change.path)
    return out


def _compare_dir(old_dir: str | None, new_dir: str, rel: str, out: list[Change]) -> None:
    new_names = set()
    for entry in os.scandir(new_dir):
        new_names.add(entry.name)
        path = rel + "/" + entry.name
        st = entry.stat(follow_symlinks=False)
        old_path = old_dir + "/" + entry.name if old_dir is not None else None
        old_st = _lstat(old_path) if old_path else None
        if old_st is None:
            out.append(Change("A", path))
            if stat.S_ISDIR(st.st_mode):
                _compare_dir(None, entry.path, path, out)
            continue
        changed = _differs(old_st, st, old_path, entry.path)
        if changed:
            out.append(Change("C", path))
        if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(old_st.st_mode):
            before = len(out)
            _compare_dir(old_path, entry.path, path, out)
            # A directory whose content changed is listed too, so its metadata travels with the diff.
            if len(out) > before and not changed:
                out.append(Change("C", path))
    if old_dir is not None:
        for name in os.listdir(old_dir):
            if name not in new_names:
                out.append(Change("D", rel + "/" + name))


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _differs(old: os.stat_result, new: os.stat_result, old_path: str, new_path: str) -> bool:
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False  # a directory's size and mtime only say that its children changed
    if old.st_size != new.st_size or old.st_mtime_ns != new.st_mtime_ns:
        return True
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(old_path) != os.readlink(new_path)
    return _xattrs(old_path) != _xattrs(new_path)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        return {name: os.getxattr(path, name, follow_symlinks=False)
                for name in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def changes(driver, layer_id: str, parent: str | None) -> list[Change]:
    with mounted(driver, parent) as old, mounted(driver, layer_id) as new:
        return compare(old, new)


def export_changes(root: str, found: list[Change], id_shift=None) -> Iterator[bytes]:
    """Tar chunks for ``found`` (from ``compare``) with the content read from ``root``."""
    writer = archive.TarWriter(id_shift)
    for change in found:
        arcname = change.path.lstrip("/")
        if change.kind == "D":
            yield writer.whiteout(arcname)
        else:
            path = root + change.path
            yield from writer.add(arcname, path, os.lstat(path))
    yield writer.end()


def diff(driver, layer_id: str, parent: str | None) -> Iterator[bytes]:
    # The mounts are held until the consumer has read the last chunk (or closes the generator).
    with mounted(driver, parent) as old, mounted(driver, layer_id) as new:
        yield from export_changes(new, compare(old, new), driver.id_unshift)


def diff_size(driver, layer_id: str, parent: str | None) -> int:
    with mounted(driver, parent) as old, mounted(driver, layer_id) as new:
        return changes_size(new, compare(old, new))


def changes_size(root: str, found: list[Change]) -> int:
    """Bytes of regular-file content added or changed, each hard-linked inode counted once."""
    return regular_bytes(os.lstat(root + change.path) for change in found if change.kind != "D")


def regular_bytes(stats: Iterable[os.stat_result]) -> int:
    """Sum of regular files' sizes, each inode (hard links) counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for st in stats:
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


@contextlib.contextmanager
def layer_to_fill(driver, layer_id: str, parent: str | None):
    """Create ``layer_id`` if missing for an apply_diff; remove it again if the apply fails."""
    created = not driver.exists(layer_id)
    if created:
        driver.create(layer_id, parent)
    try:
        yield
    except BaseException:
        if created:
            driver.remove(layer_id)
        raise


def apply_diff(driver, layer_id: str, parent: str | None, stream: BinaryIO) -> int:
    """Extract into the mounted layer, deleting whatever whiteouts name; creates the layer if missing."""
    with layer_to_fill(driver, layer_id, parent), mounted(driver, layer_id) as root:
        return archive.extract(stream, root, archive.DeleteWhiteouts(), driver.id_shift)
