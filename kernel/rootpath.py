"""Resolve a path inside a container's root filesystem so that no symlink can lead outside it."""

from __future__ import annotations

import os
from pathlib import Path

from pallet.kernel.errors import PalletError

_MAX_LINKS = 255


def resolve_in_root(root: Path, path: str, follow_last: bool = True) -> Path:
    """Host path of ``path`` as seen from inside ``root`` (absolute symlinks are relative to ``root``).

    Like a chroot lookup: ``..`` never climbs above ``root`` and symlinks are followed by hand, so the
    result is always under ``root``. The final component need not exist.
    """
    root = Path(root)
    pending = [p for p in str(path).split("/") if p]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if (pending or follow_last) and candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise PalletError(f"too many levels of symbolic links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


class ContainerView:
    """A container's filesystem as its processes see it: the rootfs with its bind mounts over it.

    ``binds`` are (destination in the container, host source, read-only). Paths are resolved
    component by component in that view — a symlink inside a bind-mounted directory that names
    ``/etc/x`` leads to the container's ``/etc/x``, never the host's — and files are opened with
    ``openat2(RESOLVE_IN_ROOT)`` below the one mount that holds them, so that a symlink the
    container swaps in meanwhile cannot lead outside that mount either.
    """

    def __init__(self, rootfs: Path, binds: list[tuple[str, str, bool]] = ()):
        self.rootfs = Path(rootfs)
        self.binds = sorted(((os.path.normpath("/" + dest.lstrip("/")), Path(source), bool(readonly))
                             for dest, source, readonly in binds), key=lambda bind: len(bind[0]), reverse=True)

    def locate(self, parts: list[str]) -> tuple[Path, list[str], str | None, bool]:
        """For resolved components: (host root of the mount holding them, components below that root,
        the bind's destination or None for the rootfs, whether that mount is read-only)."""
        inner = "/" + "/".join(parts)
        for dest, source, readonly in self.binds:
            if inner == dest or inner.startswith(dest.rstrip("/") + "/"):
                return source, [p for p in inner[len(dest):].split("/") if p], dest, readonly
        return self.rootfs, list(parts), None, False

    def host(self, parts: list[str]) -> Path:
        root, rest, _dest, _ro = self.locate(parts)
        return root.joinpath(*rest)

    def resolve(self, path: str, follow_last: bool = True) -> list[str]:
        """The components of ``path`` with every symlink followed (the last one only with ``follow_last``)
        as the container would follow it; ``..`` never climbs above ``/``."""
        pending = [p for p in str(path).split("/") if p]
        resolved: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.host([*resolved, part])
            if (pending or follow_last) and candidate.is_symlink():
                links += 1
                if links > _MAX_LINKS:
                    raise PalletError(f"too many levels of symbolic links resolving {path}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p] + pending
                continue
            resolved.append(part)
        return resolved

    def open(self, parts: list[str], flags: int) -> int:
        """An fd for resolved components, opened by the kernel below the mount that holds them."""
        from pallet.kernel import linux

        root, rest, _dest, _ro = self.locate(parts)
        if not rest:
            return os.open(root, flags | os.O_CLOEXEC)
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return linux.openat2(root_fd, "/".join(rest), flags | os.O_CLOEXEC,
                                 linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS)
        finally:
            os.close(root_fd)
