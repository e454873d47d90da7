"""COPY and ADD into a mounted scratch layer: Docker's destination rules, owners, modes, archives, URLs.

Every destination path is resolved with :func:`resolve_in_root`, so a symlink in the image can
never lead a copy out of the layer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
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
    """Copies into ``rootfs`` with fixed owner and optional mode; parent directories it makes get the owner."""

    def __init__(self, rootfs: Path, owner: tuple[int, int], chmod: int | None):
        self.rootfs, self.owner, self.chmod = rootfs, owner, chmod

    def target(self, path: str) -> Path:
        return resolve_in_root(self.rootfs, path)

    def make_dirs(self, path: str) -> Path:
        """Create ``path`` and its missing parents (0755, the copy's owner); return its host path."""
        current = "/"
        for part in [p for p in path.split("/") if p]:
            current = os.path.join(current, part)
            host = self.target(current)
            if not os.path.lexists(host):
                os.mkdir(host, 0o755)
                os.lchown(host, *self.owner)
            elif not host.is_dir():
                raise PalletError(f"cannot copy to {path}: {current} is not a directory")
        return self.target(path)

    def copy_entry(self, source: Path, st: os.stat_result, dest: Path) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(dest) and not dest.is_dir():
                os.unlink(dest)
            if not os.path.lexists(dest):
                os.mkdir(dest)
        else:
            if os.path.lexists(dest):
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    os.unlink(dest)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), dest)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(source, dest, follow_symlinks=False)
            else:
                return  # devices, fifos and sockets in a context are not copied, as Docker's
        os.lchown(dest, *self.owner)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dest, self.chmod if self.chmod is not None else mode)
            os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))

    def copy_tree(self, entries, source_root: Path, strip: str, dest: str) -> None:
        """Copy ``entries`` (``(rel, lstat)``, parents first) from ``source_root``; ``strip`` is the prefix
        removed from each rel (the copied directory itself is not created, only its contents)."""
        base = self.make_dirs(dest)
        dirs = []
        for rel, st in entries:
            inner = rel[len(strip):].lstrip("/") if strip else rel
            if not inner:
                continue
            target = resolve_in_root(self.rootfs, os.path.join(dest, inner), follow_last=False)
            if not str(target).startswith(str(base)):
                target = base / inner
            self.copy_entry(source_root / rel, st, target)
            if stat.S_ISDIR(st.st_mode):
                dirs.append((target, st))
        for target, st in reversed(dirs):  # a directory's time after its children were written
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    def copy_file(self, source: Path, st: os.stat_result, dest: str, into_dir: bool) -> None:
        if into_dir:
            self.make_dirs(dest)
            dest = os.path.join(dest, source.name)
        else:
            parent = os.path.dirname(dest.rstrip("/")) or "/"
            self.make_dirs(parent)
        self.copy_entry(source, st, resolve_in_root(self.rootfs, dest, follow_last=False))

    def write_file(self, dest: str, data: bytes, into_dir: bool, name: str, mode: int = 0o644) -> None:
        if into_dir:
            self.make_dirs(dest)
            dest = os.path.join(dest, name)
        else:
            self.make_dirs(os.path.dirname(dest.rstrip("/")) or "/")
        target = resolve_in_root(self.rootfs, dest, follow_last=False)
        if os.path.lexists(target) and not target.is_dir():
            os.unlink(target)
        target.write_bytes(data)
        os.lchown(target, *self.owner)
        os.chmod(target, self.chmod if self.chmod is not None else mode)


def is_archive(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def extract_archive(copier: Copier, archive: Path, dest: str) -> None:
    """ADD of a local tar: unpacked into ``dest`` keeping its owners and modes; escaping entries refused."""
    base = copier.make_dirs(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.name.startswith("/") or ".." in parts:
                    raise PalletError(f'archive {archive.name} has an entry outside its destination: "{member.name}"')
                if member.isdev():
                    continue
                tar.extract(member, base, set_attrs=True, numeric_owner=True, filter="tar")
    except tarfile.TarError as exc:
        raise PalletError(f"cannot extract {archive.name}: {exc}") from None


def download(url: str, checksum: str, scratch: Path) -> tuple[Path, str]:
    """Fetch ``url`` into ``scratch``; verify ``--checksum``; return (file, sha256 digest)."""
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
