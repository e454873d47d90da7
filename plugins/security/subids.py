"""Subordinate ID files (``/etc/subuid``, ``/etc/subgid``): read a user's ranges, grant a new one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError

DEFAULT_REMAP_USER = "pallet"
RANGE_SIZE = 65536
FIRST_SUBORDINATE = 100000


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int


def read_ranges(path: Path, name: str, numeric_id: int | None = None) -> list[IdRange]:
    """The ranges ``path`` (subuid/subgid format ``name:start:count``) grants to ``name`` or its numeric id."""
    ranges = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise PalletError(f"{path}:{number}: malformed line (expected name:start:count)")
        if parts[0] == name or (numeric_id is not None and parts[0] == str(numeric_id)):
            ranges.append(IdRange(int(parts[1]), int(parts[2])))
    return ranges


def add_entry(path: Path, name: str, size: int = RANGE_SIZE) -> IdRange:
    """Give ``name`` a range in ``path`` unless it has one: the first free ``size`` IDs from 100000 up."""
    from pallet.kernel.fsutil import atomic_write, locked

    path = Path(path)
    with locked(path.parent / f".{path.name}.pallet.lock"):
        existing = read_ranges(path, name)
        if existing:
            return existing[0]
        text = path.read_text() if path.exists() else ""
        taken = []
        for line in text.splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                taken.append((int(parts[1]), int(parts[1]) + int(parts[2])))
        start = FIRST_SUBORDINATE
        for low, high in sorted(taken):
            if start + size <= low:
                break
            start = max(start, high)
        if text and not text.endswith("\n"):
            text += "\n"
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        atomic_write(path, f"{text}{name}:{start}:{size}\n".encode(), mode)
        return IdRange(start, size)
