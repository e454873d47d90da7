"""Safe, streaming extraction of layer tars (with OCI whiteouts) and tar creation for diffs.

Extraction policy (why it is stricter than GNU tar, and how it compares with Docker):

- Entry names with a ``..`` component, and absolute names, are refused. Docker strips a
  leading ``/`` and cleans ``a/../b``; no tool that builds image layers writes such names, so
  a layer carrying one is damaged or hostile and is better refused whole.
- Parent directories are resolved component by component inside the layer root. A symlink
  met on the way is followed as it would be inside the container (absolute targets start at
  the layer root, as Docker's chrooted unpacker sees them); a target that climbs above the
  root with ``..`` is refused, so nothing is ever written outside the root.
- Hard links must name a path inside the layer (same rules) that this extraction can see.
- ``trusted.overlay.*`` xattrs in a tar are dropped: they would steer overlayfs.

The reader parses headers itself (ustar blocks with one ``struct`` call, PAX and GNU long
names) and copies file data with large reads: ``tarfile``'s header parsing and its stream
mode's small re-buffering cost about as much as the syscalls. It holds one buffer at a time.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import tarfile
from typing import BinaryIO, Iterable, Iterator

from pallet.kernel.errors import PalletError

BLOCK = 512
COPY_CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
# aufs bookkeeping names (".wh..wh.plnk" …) carry nothing a layer needs.
WHITEOUT_META_PREFIX = ".wh..wh."
OVERLAY_XATTR_PREFIX = "trusted.overlay."

_REGULAR = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DeleteWhiteouts:
    """Whiteouts for drivers whose layers are full trees (vfs, naive): really delete."""

    creates_parents = False
    tracks_unpacked = True  # an opaque dir keeps what this layer unpacked into it

    def whiteout(self, directory: str, name: str) -> bool:
        return remove_path(os.path.join(directory, name))

    def opaque(self, directory: str, unpacked: set[str]) -> bool:
        return _remove_not_unpacked(directory, unpacked)


class OverlayWhiteouts:
    """Whiteouts for an overlayfs upper/diff dir: a 0/0 char device, or ``trusted.overlay.opaque=y``."""

    creates_parents = True
    tracks_unpacked = False

    def whiteout(self, directory: str, name: str) -> bool:
        path = os.path.join(directory, name)
        replaced = remove_path(path)
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        return replaced

    def opaque(self, directory: str, unpacked: set[str]) -> bool:
        os.setxattr(directory, OVERLAY_XATTR_PREFIX + "opaque", b"y", follow_symlinks=False)
        return False


def remove_path(path: str) -> bool:
    """Remove whatever is at ``path`` (never following a symlink); True if a directory or symlink went away."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
        return True
    os.unlink(path)
    return stat.S_ISLNK(st.st_mode)


def _remove_not_unpacked(directory: str, unpacked: set[str]) -> bool:
    removed = False
    for entry in os.scandir(directory):
        if entry.path not in unpacked:
            removed = remove_path(entry.path) or removed
        elif entry.is_dir(follow_symlinks=False):
            removed = _remove_not_unpacked(entry.path, unpacked) or removed
    return removed


class _Header:
    """One member after PAX / GNU long-name records are folded in."""

    __slots__ = ("name", "type", "size", "mode", "uid", "gid", "mtime_ns", "linkname", "devmajor", "devminor",
                 "xattrs")


def _read_exact(read, size: int) -> bytes:
    data = read(size)
    if len(data) == size:
        return data
    parts, got = [data], len(data)
    while got < size:
        more = read(size - got)
        if not more:
            raise PalletError("layer tar is truncated")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _parse_pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        if length <= 0:
            raise PalletError("layer tar has a malformed PAX header")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def _pax_time_ns(value: bytes) -> int:
    whole, _, frac = value.decode().partition(".")
    sign = -1 if whole.startswith("-") else 1
    return int(whole) * 1_000_000_000 + sign * int((frac + "000000000")[:9])


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_ZERO_BLOCK = bytes(BLOCK)
_POSIX_MAGIC = b"ustar\x00"
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256 for values that do not fit in octal
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[0] == 0xFF else value
    digits = field.split(b"\0", 1)[0].strip()
    return int(digits, 8) if digits else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_block(buf: bytes) -> _Header:
    (name, mode, uid, gid, size, mtime, chksum, kind, linkname, magic, _version, _uname, _gname,
     devmajor, devminor, prefix) = _USTAR.unpack_from(buf)
    h = _Header()
    h.type = kind
    h.xattrs = None
    h.devmajor = h.devminor = 0
    try:
        # Fast path: plain NUL-terminated octal, as GNU tar, Go and Python write them.
        checksum = int(chksum[:6], 8)
        h.mode, h.uid, h.gid = int(mode[:-1], 8), int(uid[:-1], 8), int(gid[:-1], 8)
        h.size, mtime_s = int(size[:-1], 8), int(mtime[:-1], 8)
    except ValueError:
        try:
            checksum = _number(chksum)
            h.mode, h.uid, h.gid = _number(mode), _number(uid), _number(gid)
            h.size, mtime_s = _number(size), _number(mtime)
        except ValueError:
            raise PalletError(f'layer tar is damaged: bad number in the header of "{_text(name)}"') from None
    if checksum != sum(buf) - sum(chksum) + 256:
        raise PalletError("layer tar is damaged: bad header checksum")
    h.mtime_ns = mtime_s * 1_000_000_000
    h.name = _text(name)
    if magic == _POSIX_MAGIC and prefix[0]:
        h.name = _text(prefix) + "/" + h.name
    h.linkname = _text(linkname) if linkname[0] else ""
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        try:
            h.devmajor, h.devminor = _number(devmajor), _number(devminor)
        except ValueError:
            raise PalletError(f'layer tar is damaged: bad device number for "{h.name}"') from None
    return h


def read_headers(stream: BinaryIO) -> Iterator[tuple[_Header, object]]:
    """Yield ``(header, read)`` per member; the caller consumes the member's data (padded) with ``read``."""
    read = stream.read
    global_pax: dict[str, bytes] = {}
    pax: dict[str, bytes] = {}
    long_name = long_link = None
    while True:
        buf = read(BLOCK)
        if len(buf) < BLOCK:
            if not buf:
                return
            buf += _read_exact(read, BLOCK - len(buf))
        if buf == _ZERO_BLOCK:
            while read(COPY_CHUNK):  # drain: callers may be hashing the whole stream
                pass
            return
        h = _parse_block(buf)
        kind = h.type
        if kind in _META_TYPES:
            payload = _read_exact(read, _padded(h.size))[:h.size]
            if kind == tarfile.XHDTYPE:
                pax.update(_parse_pax(payload))
            elif kind == tarfile.XGLTYPE:
                global_pax.update(_parse_pax(payload))
            elif kind == tarfile.GNUTYPE_LONGNAME:
                long_name = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                long_link = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            continue
        if kind == tarfile.GNUTYPE_SPARSE:
            raise PalletError(f'layer entry "{h.name}": GNU sparse files are not supported')
        if long_name is not None:
            h.name, long_name = long_name, None
        if long_link is not None:
            h.linkname, long_link = long_link, None
        if pax or global_pax:
            _apply_pax(h, {**global_pax, **pax})
            pax = {}
        if kind in _REGULAR and h.name.endswith("/"):
            h.type = tarfile.DIRTYPE  # old V7 archives mark directories only by the slash
        yield h, read


def _apply_pax(h: _Header, records: dict[str, bytes]) -> None:
    for key, value in records.items():
        if key == "path":
            h.name = value.decode("utf-8", "surrogateescape")
        elif key == "linkpath":
            h.linkname = value.decode("utf-8", "surrogateescape")
        elif key == "size":
            h.size = int(value)
        elif key == "uid":
            h.uid = int(value)
        elif key == "gid":
            h.gid = int(value)
        elif key == "mtime":
            h.mtime_ns = _pax_time_ns(value)
        elif key.startswith("GNU.sparse."):
            raise PalletError(f'layer entry "{h.name}": GNU sparse files are not supported')
        elif key.startswith("SCHILY.xattr."):
            if h.xattrs is None:
                h.xattrs = {}
            h.xattrs[key[len("SCHILY.xattr."):]] = value


def _padded(size: int) -> int:
    return (size + BLOCK - 1) & ~(BLOCK - 1)


def _split(name: str, entry: str) -> list[str]:
    if name.startswith("/"):
        raise PalletError(f'layer entry "{entry}": absolute paths are refused')
    parts = [part for part in name.split("/") if part and part != "."]
    if ".." in parts:
        raise PalletError(f'layer entry "{entry}": ".." components are refused (path escapes the layer)')
    return parts


class _Extractor:
    """State of one extraction: the root, the verified-directory cache, deferred directory times."""

    def __init__(self, root: str, whiteouts):
        self.root = os.path.realpath(root)
        self.whiteouts = whiteouts
        self.dirs: dict[str, str] = {"": self.root}
        self.dir_times: list[tuple[str, int]] = []
        self.unpacked: set[str] = set()
        self.as_root = os.geteuid() == 0
        self.umask = _current_umask()
        self.implied_owner: tuple[int, int] | None = None  # for parents the tar does not list (root's, shifted)

    def resolve_dir(self, parts: list[str], entry: str, create: bool = True) -> str | None:
        """The real path of directory ``parts``, created if missing, never leaving the root."""
        key = "/".join(parts)
        hit = self.dirs.get(key)
        if hit is not None:
            return hit
        real: list[str] = []
        pending = list(reversed(parts))
        hops = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not real:
                    raise PalletError(f'layer entry "{entry}": a symlink in its path leads outside the layer')
                real.pop()
                continue
            path = self.root + "/" + "/".join(real + [comp])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path, 0o755)
                if self.implied_owner is not None:
                    os.chown(path, *self.implied_owner)
                real.append(comp)
                continue
            if stat.S_ISDIR(st.st_mode):
                real.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise PalletError(f'layer entry "{entry}": too many levels of symbolic links')
                target = os.readlink(path)
                if target.startswith("/"):
                    real = []  # absolute targets start at the layer root, as inside the container
                pending.extend(reversed(target.split("/")))
            else:
                raise PalletError(f'layer entry "{entry}": "{"/".join(real + [comp])}" is not a directory')
        result = self.root + "".join("/" + c for c in real)
        self.dirs[key] = result
        return result

    def replaced(self, changed_tree: bool) -> None:
        # A directory or symlink went away or changed kind: cached resolutions may now be wrong.
        if changed_tree:
            self.dirs = {"": self.root}

    def clear_slot(self, path: str) -> None:
        self.replaced(remove_path(path))

    def owner_mode(self, path: str, h: _Header) -> None:
        """Owner, mode and xattrs of a directory or special file we just created at ``path``."""
        if self.as_root:
            os.chown(path, h.uid, h.gid, follow_symlinks=False)
        os.chmod(path, h.mode & 0o7777)  # after chown, which clears setuid/setgid bits
        if h.xattrs:
            self.set_xattrs(path, h.xattrs)

    @staticmethod
    def set_xattrs(target, xattrs: dict[str, bytes]) -> None:
        for key, value in xattrs.items():
            if key.startswith(OVERLAY_XATTR_PREFIX):
                continue
            try:
                os.setxattr(target, key, value, follow_symlinks=not isinstance(target, str))
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                    raise

    def write_file(self, path: str, h: _Header, read) -> None:
        mode = h.mode & 0o7777
        try:
            fd = os.open(path, _O_CREATE, mode & 0o777)
        except FileExistsError:
            self.clear_slot(path)
            fd = os.open(path, _O_CREATE, mode & 0o777)
        try:
            size = h.size
            if size:
                padded = (size + BLOCK - 1) & ~(BLOCK - 1)
                if padded <= COPY_CHUNK:
                    data = read(padded)
                    if len(data) != padded:
                        data += _read_exact(read, padded - len(data))
                    _write_all(fd, memoryview(data)[:size])
                else:
                    _copy_to(fd, read, size, padded)
            # owner_mode by fd, inlined: this is the per-file hot path.
            if self.as_root:
                os.fchown(fd, h.uid, h.gid)
            if mode & (0o7000 | self.umask):  # set at open unless umask or chown (setuid) interfered
                os.fchmod(fd, mode)
            if h.xattrs:
                self.set_xattrs(fd, h.xattrs)
            os.utime(fd, ns=(h.mtime_ns, h.mtime_ns))
        finally:
            os.close(fd)

    def make_dir(self, name: str, path: str, h: _Header) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path) or os.path.islink(path):
                self.clear_slot(path)
                os.mkdir(path, 0o700)
        self.owner_mode(path, h)
        self.dir_times.append((path, h.mtime_ns))
        self.dirs[name] = path

    def make_node(self, path: str, h: _Header, entry: str) -> None:
        if h.type == tarfile.SYMTYPE:
            create = lambda: os.symlink(h.linkname, path)  # noqa: E731
        elif h.type == tarfile.FIFOTYPE:
            create = lambda: os.mkfifo(path, 0o600)  # noqa: E731
        else:
            kind = stat.S_IFCHR if h.type == tarfile.CHRTYPE else stat.S_IFBLK
            create = lambda: os.mknod(path, kind | 0o600, os.makedev(h.devmajor, h.devminor))  # noqa: E731
        try:
            create()
        except FileExistsError:
            self.clear_slot(path)
            create()
        except PermissionError:
            raise PalletError(f'layer entry "{entry}": cannot create a device node here (not root?)') from None
        if h.type == tarfile.SYMTYPE:
            if self.as_root:
                os.chown(path, h.uid, h.gid, follow_symlinks=False)
            os.utime(path, ns=(h.mtime_ns, h.mtime_ns), follow_symlinks=False)
        else:
            self.owner_mode(path, h)
            os.utime(path, ns=(h.mtime_ns, h.mtime_ns), follow_symlinks=False)

    def make_hardlink(self, path: str, h: _Header, entry: str) -> None:
        tparts = _split(h.linkname, entry)
        if not tparts:
            raise PalletError(f'layer entry "{entry}": hard link to the layer root')
        tdir = self.resolve_dir(tparts[:-1], entry, create=False)
        target = None if tdir is None else tdir + "/" + tparts[-1]
        try:
            tst = os.lstat(target) if target else None
        except FileNotFoundError:
            tst = None
        if tst is None:
            raise PalletError(f'layer entry "{entry}": hard link target "{h.linkname}" is not in the layer')
        if stat.S_ISDIR(tst.st_mode):
            raise PalletError(f'layer entry "{entry}": hard link to a directory "{h.linkname}"')
        try:
            os.link(target, path, follow_symlinks=False)
        except FileExistsError:
            if os.path.samefile(target, path) if not os.path.islink(path) else False:
                return
            self.clear_slot(path)
            os.link(target, path, follow_symlinks=False)

    def finish(self) -> None:
        for path, mtime_ns in reversed(self.dir_times):
            try:
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed later by a whiteout in the same layer


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o7777  # unknown: always chmod


def _copy_to(fd: int, read, size: int, padded: int) -> None:
    left = size
    while left:
        chunk = read(min(left, COPY_CHUNK))
        if not chunk:
            raise PalletError("layer tar is truncated")
        _write_all(fd, chunk)
        left -= len(chunk)
    if padded - size:
        _read_exact(read, padded - size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _skip(read, size: int) -> None:
    left = _padded(size)
    while left:
        chunk = read(min(left, COPY_CHUNK))
        if not chunk:
            raise PalletError("layer tar is truncated")
        left -= len(chunk)


def extract(stream: BinaryIO, root, whiteouts=None, id_shift=None) -> int:
    """Extract an uncompressed layer tar from ``stream`` into ``root``; return the bytes of file content.

    ``whiteouts`` is a ``DeleteWhiteouts`` (default) or ``OverlayWhiteouts`` (or any object
    with the same two methods). Unsafe entries raise ``PalletError`` naming the entry.
    ``id_shift(uid, gid) -> (uid, gid)`` re-owns every entry (layers of a user-namespace-remapped
    storage home are kept ID-shifted, as Docker's ``userns-remap`` does).
    """
    x = _Extractor(str(root), whiteouts or DeleteWhiteouts())
    if id_shift is not None:
        x.implied_owner = id_shift(0, 0)
    track = getattr(x.whiteouts, "tracks_unpacked", True)
    dirs = x.dirs
    applied = 0
    for h, read in read_headers(stream):
        entry = name = h.name
        if name.startswith("./"):
            name = name[2:]
        name = name.rstrip("/")
        if id_shift is not None:
            h.uid, h.gid = id_shift(h.uid, h.gid)
        if not name or name[0] in "/." or "//" in name or "/." in name:
            # The rare shapes (absolute, dot components, dot files) take the checking path.
            parts = _split(entry, entry)
            if not parts:
                _skip(read, h.size)  # the layer root itself: keep the driver's own
                continue
            name = "/".join(parts)
        key, _, base = name.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            _skip(read, h.size)
            _whiteout(x, name.split("/"), entry)
            continue
        parent = dirs.get(key)
        if parent is None:
            parent = x.resolve_dir(key.split("/") if key else [], entry)
            dirs = x.dirs
        path = parent + "/" + base
        kind = h.type
        if kind in _REGULAR:
            x.write_file(path, h, read)
            applied += h.size
        else:
            if h.size:
                _skip(read, h.size)
            if kind == tarfile.DIRTYPE:
                x.make_dir(name, path, h)
            elif kind == tarfile.LNKTYPE:
                x.make_hardlink(path, h, entry)
            elif kind in (tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                x.make_node(path, h, entry)
            else:
                continue
            dirs = x.dirs
        if track:
            x.unpacked.add(path)
    x.finish()
    return applied


def _whiteout(x: _Extractor, parts: list[str], entry: str) -> None:
    base = parts[-1]
    if base.startswith(WHITEOUT_META_PREFIX) and base != WHITEOUT_OPAQUE:
        return
    parent = x.resolve_dir(parts[:-1], entry, create=x.whiteouts.creates_parents)
    if parent is None:
        return
    if base == WHITEOUT_OPAQUE:
        x.replaced(x.whiteouts.opaque(parent, x.unpacked))
        return
    name = base[len(WHITEOUT_PREFIX):]
    if not name or name in (".", ".."):
        raise PalletError(f'layer entry "{entry}": malformed whiteout')
    x.replaced(x.whiteouts.whiteout(parent, name))


# --- tar creation ------------------------------------------------------------------------

class TarWriter:
    """Produce an uncompressed PAX tar as a sequence of byte chunks, hard links folded by inode."""

    def __init__(self, id_shift=None):
        self.links: dict[tuple[int, int], str] = {}
        self.id_shift = id_shift  # ``(uid, gid) -> (uid, gid)`` for the headers (back from a remapped home)

    def add(self, arcname: str, path: str, st: os.stat_result | None = None) -> Iterator[bytes]:
        """Chunks for one filesystem object (not its children)."""
        st = st or os.lstat(path)
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        if self.id_shift is not None:
            info.uid, info.gid = self.id_shift(info.uid, info.gid)
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        mode = st.st_mode
        content = False
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
            else:
                if st.st_nlink > 1:
                    self.links[key] = arcname
                info.size = st.st_size
                content = True
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets are not archived (as tar and Docker do)
        info.pax_headers = _xattr_records(path)
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if content:
            yield from _file_chunks(path, info.size)

    def whiteout(self, arcname: str) -> bytes:
        """Header marking ``arcname`` deleted."""
        head, _, name = arcname.rpartition("/")
        info = tarfile.TarInfo((head + "/" if head else "") + WHITEOUT_PREFIX + name)
        info.mode = 0o644
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def opaque(self, dir_arcname: str) -> bytes:
        """Header marking every lower entry of ``dir_arcname`` hidden."""
        info = tarfile.TarInfo(dir_arcname.rstrip("/") + "/" + WHITEOUT_OPAQUE)
        info.mode = 0o644
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    @staticmethod
    def end() -> bytes:
        return b"\0" * (BLOCK * 2)


def _xattr_records(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    records = {}
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        records["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return records


def _file_chunks(path: str, size: int) -> Iterator[bytes]:
    left = size
    with open(path, "rb", buffering=0) as handle:
        while left:
            chunk = handle.read(min(left, COPY_CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    if left:  # the file shrank while we read it: keep the archive well-formed
        yield b"\0" * left
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)


def tar_tree(root, arc_prefix: str = "") -> Iterator[bytes]:
    """A whole directory tree as tar chunks (used by naive diff of a base layer and by tests)."""
    writer = TarWriter()
    for arcname, path, st in walk(str(root)):
        yield from writer.add(arc_prefix + arcname, path, st)
    yield writer.end()


def walk(root: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry under ``root`` as ``(relative name, path, lstat)``, parents first, names sorted."""
    base = root + ("/" + rel if rel else "")
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        name = rel + "/" + entry.name if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        yield name, entry.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, name)


class ChunkReader:
    """A read-only file object over an iterator of byte chunks (feeds ``diff`` output to ``apply_diff``)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = b""
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            data = self._buffer[self._pos:] + b"".join(self._chunks)
            self._buffer, self._pos = b"", 0
            return data
        parts = []
        while size > 0:
            if self._pos >= len(self._buffer):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buffer, self._pos = chunk, 0
            piece = self._buffer[self._pos:self._pos + size]
            self._pos += len(piece)
            size -= len(piece)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readable(self) -> bool:
        return True
