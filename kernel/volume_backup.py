"""Volume backup and moves: ``volume export`` / ``import`` as tar streams, ``rename`` and ``clone``.

The archive is a PAX tar of the volume's content, each directory's entries sorted, with numeric owners, full
modes (setuid, sticky), whole-second mtimes and every extended attribute (ACLs and file
capabilities included) as ``SCHILY.xattr.*`` records, the keys GNU tar and bsdtar read.
Nothing in it depends on when or where it was made, so exporting an imported volume gives the
same bytes. While a volume is exported or filled it counts as mounted (by a pseudo-container
``backup-<pid>``), so ``volume rm`` cannot pull it away meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError

XATTR_PREFIX = "SCHILY.xattr."


@contextlib.contextmanager
def mounted(store, name: str):
    """The volume's host path, mounted for the duration of the block (an unknown name is NotFound)."""
    store.get(name)
    holder = f"backup-{os.getpid()}"
    path, _empty = store.mount(name, holder)
    try:
        yield Path(path)
    finally:
        store.unmount(name, holder)


def _entries(top: Path):
    """Every path under ``top`` (not ``top`` itself), parents before children, names sorted."""
    for base, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + files):
            yield Path(base, name)


def _tarinfo(tar: tarfile.TarFile, path: Path, arcname: str) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(path), arcname)
    info.mtime = int(os.lstat(path).st_mtime)
    info.uname = info.gname = ""  # numeric owners: the names of this host mean nothing where it is imported
    for key in sorted(os.listxattr(path, follow_symlinks=False)):
        value = os.getxattr(path, key, follow_symlinks=False)
        info.pax_headers[XATTR_PREFIX + key] = value.decode("utf-8", "surrogateescape")
    return info


def write_archive(top: Path, out) -> None:
    """Write ``top``'s content to the binary stream ``out`` as a reproducible PAX tar."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        root = _tarinfo(tar, top, ".")
        tar.addfile(root)
        for path in _entries(top):
            info = _tarinfo(tar, path, "./" + str(path.relative_to(top)))
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def export_volume(store, name: str, out) -> None:
    with mounted(store, name) as top:
        write_archive(top, out)


def export_to_file(store, name: str, path: str) -> None:
    """``volume export -o FILE``: the archive appears whole under its name or not at all."""
    from pallet.kernel.fsutil import fsync_dir

    target = Path(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            export_volume(store, name, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _inside(top: str, path: str) -> bool:
    return path == top or path.startswith(top + os.sep)


def _checked(top: str):
    """A tarfile filter that keeps modes and owners but refuses members that would land outside ``top``.

    Members are extracted in order, so a symlink extracted earlier is already on disk when a
    later member's parent is resolved: ``link -> /etc`` then ``link/passwd`` is refused.
    """
    def check(member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo:
        name = member.name.removeprefix("./")
        if name in ("", "."):
            return member
        if os.path.isabs(name) or ".." in Path(name).parts:
            raise PalletError(f"volume import: the archive member {member.name!r} points outside the volume")
        parent = os.path.realpath(os.path.join(top, os.path.dirname(name)))
        if not _inside(top, parent):
            raise PalletError(f"volume import: the archive member {member.name!r} goes through a link out of the volume")
        if member.islnk() and not _inside(top, os.path.realpath(os.path.join(top, member.linkname.removeprefix("./")))):
            raise PalletError(f"volume import: the hard link {member.name!r} points outside the volume")
        return member
    return check


def read_archive(top: Path, source) -> None:
    """Extract the tar stream ``source`` into the directory ``top``, restoring owners, modes, xattrs and mtimes."""
    top_real = os.path.realpath(top)
    directories = []
    try:
        with tarfile.open(fileobj=source, mode="r|*", encoding="utf-8") as tar:
            check = _checked(top_real)
            for member in tar:
                check(member, top_real)
                name = member.name.removeprefix("./")
                target = os.path.join(top_real, name) if name not in ("", ".") else top_real
                if target == top_real:
                    _restore(target, member)
                    directories.append((target, member))
                    continue
                tar.extract(member, top_real, set_attrs=False, numeric_owner=True, filter="fully_trusted")
                _restore(target, member)
                if member.isdir():
                    directories.append((target, member))
    except tarfile.TarError as exc:
        raise PalletError(f"volume import: not a tar archive, or a damaged one ({exc})") from None
    for target, member in reversed(directories):  # children touched the directories' mtimes
        os.utime(target, (member.mtime, member.mtime))


def _restore(target: str, member: tarfile.TarInfo) -> None:
    """Owner, mode, xattrs and mtime of one extracted member (not following a symlink)."""
    os.lchown(target, member.uid, member.gid)
    if not member.issym():
        os.chmod(target, stat.S_IMODE(member.mode))  # after chown, which clears setuid/setgid
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PREFIX):
            os.setxattr(target, key[len(XATTR_PREFIX):], value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False)
    if not member.isdir():
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def import_volume(store, name: str, source) -> bool:
    """Fill volume ``name`` (created when missing) from a tar stream; an existing volume must be empty.

    Returns whether the volume was created, so that a failed import can remove what it made.
    """
    try:
        store.get(name)
        created = False
    except NotFound:
        store.create(name)
        created = True
    try:
        with mounted(store, name) as top:
            if any(top.iterdir()):
                raise Conflict(f"volume import: volume {name} is not empty (import into a new or empty volume)")
            read_archive(top, source)
    except BaseException:
        if created:
            with contextlib.suppress(PalletError):
                store.remove(name)
        raise
    return created


def clone_volume(store, source: str, target: str) -> None:
    """A new volume ``target`` with ``source``'s driver, options, labels and an exact copy of its content."""
    record = store.get(source)
    with contextlib.suppress(NotFound):
        store.get(target)
        raise Conflict(f"volume clone: volume {target} already exists")
    store.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=store.dir) as spool:  # the same filesystem as the data, not /tmp's
        export_volume(store, source, spool)
        spool.seek(0)
        store.create(target, record.driver, record.options, record.labels)
        try:
            with mounted(store, target) as top:
                read_archive(top, spool)
        except BaseException:
            with contextlib.suppress(PalletError):
                store.remove(target)
            raise


def rename_volume(store, old: str, new: str) -> None:
    """Rename a volume no container uses: in place when its driver can, else by a clone and a remove."""
    from pallet.kernel.volumes import NAME_RE

    if not NAME_RE.match(new):
        raise UsageError(f'invalid volume name "{new}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, '
                         "at least two characters")
    with store._lock():
        record = store.get(old)
        users = store.in_use_by(old)
        if users:
            raise Conflict(f"volume rename: volume {old} is in use - [{', '.join(users)}] "
                           "(stop and remove those containers first)")
        with contextlib.suppress(NotFound):
            store.get(new)
            raise Conflict(f"volume rename: volume {new} already exists")
        if store.driver(record.driver).rename(old, new):
            record.name = new
            store._save(record)
            store._record_path(old).unlink()
            with contextlib.suppress(OSError):
                os.rmdir(store.dir / old)
            return
    clone_volume(store, old, new)
    store.remove(old)
