"""SELinux label helpers: parse ``--security-opt label=…``, allocate MCS category pairs, relabel bind mounts.

Pure where possible so it is testable on hosts without SELinux; the relabel step writes the
``security.selinux`` extended attribute, which only works where SELinux is enabled.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError, UsageError

FIELDS = ("user", "role", "type", "level")
KEYS = FIELDS + ("filetype", "disable")
# Used when the policy ships no lxc_contexts file (container-selinux's names).
FALLBACK_PROCESS = "system_u:system_r:container_t:s0"
FALLBACK_FILE = "system_u:object_r:container_file_t:s0"
MCS_CATEGORIES = 1024
# Relabeling these would break the host (Docker and Podman refuse them too).
PROTECTED = {"/", "/bin", "/boot", "/dev", "/etc", "/etc/passwd", "/etc/shadow", "/home", "/lib", "/lib64",
             "/media", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"}


@dataclass
class Label:
    """An SELinux context ``user:role:type:level`` (level may hold a colon, e.g. ``s0:c1,c2``)."""

    user: str
    role: str
    type: str
    level: str

    @classmethod
    def parse(cls, text: str) -> Label:
        parts = text.strip().split(":", 3)
        if len(parts) != 4 or not all(parts):
            raise UsageError(f'invalid SELinux context "{text}": expected user:role:type:level')
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.user}:{self.role}:{self.type}:{self.level}"


def parse_option(value: str) -> dict[str, str]:
    """``user:u,role:r,type:t,level:s0:c1,c2`` -> ``{"user": "u", …}``; ``disable`` -> ``{"disable": "true"}``.

    Commas also separate categories inside a level, so a piece that does not start with a
    known key continues the previous one.
    """
    result: dict[str, str] = {}
    last = None
    for piece in value.split(",") if value else ():
        key, sep, rest = piece.partition(":")
        if piece == "disable":
            result["disable"], last = "true", None
        elif sep and key in KEYS and key != "disable":
            if not rest:
                raise UsageError(f'invalid --security-opt "label={value}": empty {key}')
            result[key], last = rest, key
        elif last == "level":
            result["level"] += "," + piece
        else:
            raise UsageError(f'invalid --security-opt "label={value}": expected user:, role:, type:, level:, '
                             'filetype: or disable')
    return result


def policy_contexts(selinux_root: Path = Path("/etc/selinux")) -> tuple[Label, Label]:
    """The policy's container process and file labels (``contexts/lxc_contexts``), or container-selinux's names."""
    process, file = FALLBACK_PROCESS, FALLBACK_FILE
    try:
        config = (selinux_root / "config").read_text()
        kind = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("SELINUXTYPE="))
        for line in (selinux_root / kind / "contexts" / "lxc_contexts").read_text().splitlines():
            key, _, value = line.partition("=")
            value = value.strip().strip('"')
            if key.strip() == "process":
                process = value
            elif key.strip() == "file":
                file = value
    except (OSError, StopIteration):
        pass
    return Label.parse(process), Label.parse(file)


class McsAllocator:
    """Hands out distinct ``s0:cA,cB`` levels per owner (container id); the table lives in ``state_dir``.

    Releases happen lazily: an owner that ``alive`` no longer reports is dropped at the next
    allocation, so a removed or crashed container never pins its pair forever.
    """

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "mcs.json"

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def allocate(self, owner: str, alive=None, rng=random) -> str:
        from pallet.kernel.fsutil import atomic_write_json, locked

        with locked(self.path.with_suffix(".lock")):
            table = self._read()
            if alive is not None:
                table = {o: level for o, level in table.items() if o in alive or o == owner}
            if owner in table:
                return table[owner]
            used = set(table.values())
            if len(used) >= MCS_CATEGORIES * (MCS_CATEGORIES - 1) // 2:
                raise PalletError("no free SELinux MCS category pair left")
            while True:
                first, second = sorted(rng.sample(range(MCS_CATEGORIES), 2))
                level = f"s0:c{first},c{second}"
                if level not in used:
                    break
            table[owner] = level
            atomic_write_json(self.path, table)
            return level

    def release(self, owner: str) -> None:
        from pallet.kernel.fsutil import atomic_write_json, locked

        with locked(self.path.with_suffix(".lock")):
            table = self._read()
            if table.pop(owner, None) is not None:
                atomic_write_json(self.path, table)

    def owners(self) -> dict[str, str]:
        return self._read()


def relabel_target(path: str, file_label: Label, shared: bool) -> Label:
    """The label a ``:z`` (shared: no categories) or ``:Z`` (private: the container's) bind source gets."""
    if os.path.realpath(path) in PROTECTED:
        raise PalletError(f"refusing to relabel {path}: relabeling a system directory would break the host")
    level = file_label.level.split(":")[0] if shared else file_label.level
    return Label(file_label.user, file_label.role, file_label.type, level)


def relabel(path: str, label: Label) -> None:
    """Set ``security.selinux`` on ``path`` and everything below it (not following symlinks)."""
    value = str(label).encode()
    os.setxattr(path, "security.selinux", value, follow_symlinks=False)
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            os.setxattr(os.path.join(base, name), "security.selinux", value, follow_symlinks=False)
