"""COPY and ADD into a mounted scratch layer: Docker's destination rules, owners, modes, archives, URLs.

Every destination path is resolved with :func:`resolve_in_root`, so a symlink in the image can
never lead a copy out of the layer.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.rootpath import resolve_in_root


def lookup_owner(rootfs: Path, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]`` by name or number, names looked up in the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")

    def table(name: str) -> dict[str, list[str]]:
        rows = {}
        try:
            text = resolve_in_root(rootfs, f"/etc/{name}").read_text(errors="replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return rows
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3:
                rows[fields[0]] = fields
        return rows

    if user.isdigit():
        uid, primary = int(user), None
    else:
        entry = table("passwd").get(user)
        if entry is None:
            raise PalletError(f'unable to find user {user}: no matching entries in passwd file')
        uid, primary = int(entry[2]), int(entry[3]) if len(entry) > 3 and entry[3].isdigit() else 0
    if not group:
        return uid, primary if primary is not None else uid
    if group.isdigit():
        return uid, int(group)
    entry = table("group").get(group)
    if entry is None:
        raise PalletError(f'unable to find group {group}: no matching entries in group file')
    return uid, int(entry[2])


class Copier:
    """Builds a COPY/ADD layer as a tar, without writing files: destinations are resolved against the
    stage's filesystem (``lower``, mounted read-only in use) so symlinks and existing directories are
    honoured; missing parent directories get entries (0755, the copy's owner). With ``keep_owners``
    (COPY --from without --chown, as Docker's builders and buildah) copied entries keep their source's owner."""

    def __init__(self, lower: Path, owner: tuple[int, int], chmod: int | None, clamp: int,
                 keep_owners: bool = False):
        self.lower, self.owner, self.chmod, self.clamp = lower, owner, chmod, clamp
        self.keep_owners = keep_owners
        self.entries: dict[str, tuple[tarfile.TarInfo, object]] = {}
        self.dirs: set[str] = set()

    def name(self, path: str) -> str:
        """The layer-relative name ``path`` lands on (symlinks in the stage's filesystem followed)."""
        head, _, last = path.rstrip("/").rpartition("/")
        parent = resolve_in_root(self.lower, head or "/")
        rel = os.path.relpath(parent, self.lower)
        rel = "" if rel == "." else rel
        return f"{rel}/{last}" if rel else last

    def is_dir(self, path: str) -> bool:
        if not path.strip("/"):
            return True
        name = self.name(path)
        return name in self.dirs or resolve_in_root(self.lower, name).is_dir()

    def _info(self, name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode = kind, mode
        info.uid, info.gid = self.owner
        info.mtime = int(min(mtime, self.clamp))
        return info

    def _add(self, info: tarfile.TarInfo, content=None) -> None:
        self.entries.pop(info.name, None)
        self.entries[info.name] = (info, content)
        if info.type == tarfile.DIRTYPE:
            self.dirs.add(info.name)
        else:
            self.dirs.discard(info.name)

    def make_dirs(self, path: str) -> str:
        """Entries for the missing directories of ``path``; returns its layer-relative name."""
        current = ""
        for part in [p for p in path.split("/") if p]:
            current = f"{current}/{part}"
            name = self.name(current)
            if name in self.dirs:
                continue
            existing = resolve_in_root(self.lower, name, follow_last=False)
            if os.path.lexists(existing) and name not in self.entries:
                if not resolve_in_root(self.lower, name).is_dir():
                    raise PalletError(f"cannot copy to {path}: {current} is not a directory")
                continue
            self._add(self._info(name, tarfile.DIRTYPE, 0o755, self.clamp))
        return self.name(path) if path.strip("/") else ""

    def copy_entry(self, source: Path, st: os.stat_result, name: str) -> None:
        mode = self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            info = self._info(name, tarfile.DIRTYPE, mode, st.st_mtime)
        elif stat.S_ISLNK(st.st_mode):
            info = self._info(name, tarfile.SYMTYPE, 0o777, st.st_mtime)
            info.linkname = os.readlink(source)
        elif stat.S_ISREG(st.st_mode):
            info = self._info(name, tarfile.REGTYPE, mode, st.st_mtime)
            info.size = st.st_size
        else:  # devices, fifos and sockets in a context are not copied, as Docker's
            return
        if self.keep_owners:
            info.uid, info.gid = st.st_uid, st.st_gid
        self._add(info, source if info.type == tarfile.REGTYPE else None)

    def copy_tree(self, entries, source_root: Path, strip: str, dest: str) -> None:
        """Copy ``entries`` (``(rel, lstat)``, parents first) from ``source_root``; ``strip`` is the prefix
        removed from each rel (a copied directory's contents land in ``dest``, not the directory)."""
        base = self.make_dirs(dest)
        for rel, st in entries:
            inner = rel[len(strip):].lstrip("/") if strip else rel
            if not inner:
                continue
            self.copy_entry(source_root / rel, st, f"{base}/{inner}" if base else inner)

    def copy_file(self, source: Path, st: os.stat_result, dest: str, into_dir: bool) -> None:
        if into_dir:
            base = self.make_dirs(dest)
            name = f"{base}/{source.name}" if base else source.name
        else:
            self.make_dirs(os.path.dirname(dest.rstrip("/")) or "/")
            name = self.name(dest)
        self.copy_entry(source, st, name)

    def write_file(self, dest: str, data: bytes, into_dir: bool, name: str, mode: int = 0o644) -> None:
        if into_dir:
            base = self.make_dirs(dest)
            target = f"{base}/{name}" if base else name
        else:
            self.make_dirs(os.path.dirname(dest.rstrip("/")) or "/")
            target = self.name(dest)
        info = self._info(target, tarfile.REGTYPE, self.chmod if self.chmod is not None else mode, self.clamp)
        info.size = len(data)
        self._add(info, data)

    def add_member(self, base: str, member: tarfile.TarInfo, data) -> None:
        """An entry of an archive ADD unpacks: its own owner and mode kept, under ``base``; parents the
        archive lacks get root-owned 0755 entries (as unpacking makes them), so the layer holds them
        with a clamped time instead of leaving each extraction to date them."""
        inner = member.name.strip("/").split("/")[:-1]
        for depth in range(1, len(inner) + 1):
            parent = "/".join(inner[:depth])
            name = f"{base}/{parent}" if base else parent
            if name not in self.entries and not os.path.lexists(resolve_in_root(self.lower, name, follow_last=False)):
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.clamp
                self._add(info)
        member.name = f"{base}/{member.name}".strip("/") if base else member.name
        if member.islnk():
            member.linkname = f"{base}/{member.linkname}".strip("/") if base else member.linkname
        member.uname = member.gname = ""
        member.mtime = min(int(member.mtime), self.clamp)
        member.pax_headers = {}
        self._add(member, data)

    def write(self, out) -> bool:
        """Write the layer tar to ``out``; whether it has any entry."""
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, content in self.entries.values():
                if isinstance(content, (str, Path)):
                    with open(content, "rb") as handle:
                        tar.addfile(info, handle)
                elif isinstance(content, bytes):
                    import io

                    tar.addfile(info, io.BytesIO(content))
                else:
                    tar.addfile(info)
        return bool(self.entries)


def is_archive(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def extract_archive(copier: Copier, archive: Path, dest: str) -> None:
    """ADD of a local tar: its entries land under ``dest`` keeping their owners and modes; escaping
    entries are refused."""
    base = copier.make_dirs(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.name.startswith("/") or ".." in parts or \
                        (member.islnk() and (member.linkname.startswith("/") or ".." in member.linkname.split("/"))):
                    raise PalletError(f'archive {archive.name} has an entry outside its destination: "{member.name}"')
                if member.isdev() or member.name.strip("/") in ("", "."):
                    continue
                member.name = os.path.normpath(member.name)  # "./a/b" (tar -C dir .) lands as "a/b"
                if member.islnk():
                    member.linkname = os.path.normpath(member.linkname)
                data = tar.extractfile(member).read() if member.isreg() else None
                copier.add_member(base, member, data)
    except tarfile.TarError as exc:
        raise PalletError(f"cannot extract {archive.name}: {exc}") from None


def download(url: str, checksum: str, scratch: Path) -> tuple[Path, str]:
    """Fetch ``url`` into ``scratch``; verify ``--checksum``; return (file, sha256 digest)."""
    import urllib.request  # here: every build imports this module, few ADD a URL

    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=scratch, prefix="add-")
    hasher = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                hasher.update(chunk)
                out.write(chunk)
    except OSError as exc:
        os.unlink(name)
        raise PalletError(f"ADD {url}: {exc}") from None
    digest = "sha256:" + hasher.hexdigest()
    if checksum and checksum != digest:
        os.unlink(name)
        raise PalletError(f"ADD {url}: digest mismatch: expected {checksum}, got {digest}")
    return Path(name), digest


def url_basename(url: str) -> str:
    from urllib.parse import urlparse

    name = os.path.basename(urlparse(url).path.rstrip("/"))
    return name or "index.html"
