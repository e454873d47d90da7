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
