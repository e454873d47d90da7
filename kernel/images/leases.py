"""Image leases: a container being created pins its image's layers before any record names them.

``rmi`` checks which containers use an image, then deletes it; ``create`` resolves an image,
makes its layers present, then writes the container record. Without a shared lock both can
succeed and the container ends up on deleted layers. A lease closes the gap: ``create`` takes
it under the image store's lock, in the same critical section that checks the image still
exists and unpacks its layers, and keeps it until the container record exists (which then
pins the image on its own). ``rmi``, ``image prune`` and ``system prune`` decide under the same
lock and refuse, or skip, an image that a live lease or a container record names.

A lease is ``images/leases/<name>``: ``{"pid", "image", "layers"}``. The lease of a process that
died (``kill -9`` during create) is stale: it pins nothing and the next lease operation removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pallet.kernel.fsutil import atomic_write_json


def _alive(pid: int) -> bool:
    from pallet.kernel.procs import pid_exists

    return pid_exists(pid)


class Leases:
    """The leases of one image store; every method is called with the store's lock held."""

    def __init__(self, images_root: Path):
        self.dir = Path(images_root) / "leases"

    def take(self, name: str, image_id: str, layers: list[str]) -> None:
        atomic_write_json(self.dir / name, {"pid": os.getpid(), "image": image_id, "layers": list(layers)},
                          durable=False)

    def release(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / name).unlink()

    def entries(self, sweep: bool = True) -> dict[str, dict]:
        """Live leases by name; stale ones (their process is gone, or unreadable) are removed (``sweep``)."""
        live = {}
        for path in list(self.dir.iterdir()) if self.dir.is_dir() else []:
            if path.name.startswith("."):
                continue
            try:
                entry = json.loads(path.read_text())
                pid = int(entry["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                entry, pid = None, 0
            if entry is not None and _alive(pid):
                live[path.name] = entry
            elif sweep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return live

    def stale(self) -> list[str]:
        """Remove the leases of dead processes; return their names (the container ids being created)."""
        if not self.dir.is_dir():
            return []
        before = {p.name for p in self.dir.iterdir() if not p.name.startswith(".")}
        return sorted(before - set(self.entries()))

    def images(self) -> dict[str, list[str]]:
        """image id -> names of the live leases on it."""
        result: dict[str, list[str]] = {}
        for name, entry in self.entries().items():
            result.setdefault(str(entry.get("image")), []).append(name)
        return result

    def layers(self) -> set[str]:
        return {c for entry in self.entries().values() for c in entry.get("layers") or []}
