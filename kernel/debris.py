"""Crash debris: what killed commands left half-made in a root, found cheaply by name and owner pid.

Every temporary name a store mutation makes carries the pid of its process (``blob-<pid>-…``,
``load-<pid>-…`` and ``oci-<pid>-…`` under ``images/tmp``; journals ``<pid>-…``; the storage
drivers' ``.tmp-<id>-<pid>-…`` and ``.rm-<id>-<pid>-…``). An item whose process still runs is
*in progress*, never removed; the rest is debris:

- temporary files and directories of interrupted writes and loads;
- half-made or half-removed driver layers;
- journals of killed transactions, with the blobs and layers they added that nothing uses;
- leases of killed creates, with the read-write layer that no container record names;
- layer records and blobs no image, lease or running transaction needs (an ``rmi`` killed
  half-way leaves those).

:func:`find` only reads (``system df`` shows it without taking a lock); :func:`remove` takes
the image store's lock, which rolls back dead journals and sweeps dead temp files
(:meth:`ImageStore.recover`), then sweeps orphans, and returns what went with its size.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Item:
    key: str           # unique within a root: the path, or "layer:<chain id>" / "blob:<digest>"
    what: str          # a phrase for people: "temporary file of an interrupted write"
    size: int
    pid: int | None    # the process that made it, when its name says
    live: bool         # that process still runs: the item is work in progress, not debris

    @property
    def owner(self) -> str:
        return str(self.pid) if self.pid else "-"


def alive(pid: int) -> bool:
    from pallet.kernel.procs import pid_exists

    return pid_exists(pid)


def owner_pid(name: str) -> int | None:
    """The pid in a temporary name (``blob-123-x``, ``123-abcd``, ``.tmp-ID-123-abcd``), or None."""
    parts = name.split("-")
    if name.startswith((".tmp-", ".rm-")):
        candidates = parts[-2:-1]
    elif parts[0] in ("blob", "load", "oci"):
        candidates = parts[1:2]
    else:
        candidates = parts[:1]
    for text in candidates:
        if (text.isascii() and text.isdigit()) and int(text) > 0:
            return int(text)
    return None


def is_dead(name: str) -> bool:
    """A temporary name whose process is gone (or names none): it is debris, safe to remove."""
    pid = owner_pid(name)
    return pid is None or not alive(pid)


def size_of(path: Path) -> int:
    """Bytes held by a file or a directory tree (not following symlinks; 0 when it is gone)."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def driver_dirs(engine) -> list[Path]:
    """The driver's home and its visible subdirectories: where the drivers keep ``.tmp-``/``.rm-`` names."""
    home = engine.storage_home(engine.storage_driver_name)
    if not home.is_dir():
        return []
    return [home, *(p for p in home.iterdir() if p.is_dir() and not p.name.startswith("."))]


def temp_items(engine, store) -> list[Item]:
    """Temporary files of blob writes and loads, and the drivers' half-made or half-removed layers."""
    found = []
    if store.blobs.tmp.is_dir():
        for entry in store.blobs.tmp.iterdir():
            pid = owner_pid(entry.name)
            found.append(Item(str(entry), "temporary file of an interrupted write", size_of(entry), pid,
                              bool(pid) and alive(pid)))
    for directory in driver_dirs(engine):
        with contextlib.suppress(OSError):
            for entry in directory.iterdir():
                if entry.name.startswith((".tmp-", ".rm-")):
                    pid = owner_pid(entry.name)
                    found.append(Item(str(entry), "half-made or half-removed layer", size_of(entry), pid,
                                      bool(pid) and alive(pid)))
    return found


def _layer_size(engine, store, chain_id: str) -> int:
    from pallet.kernel.images import layers as layerlib
    from pallet.kernel.images.records import read_layer

    with contextlib.suppress(OSError, ValueError, TypeError):
        return read_layer(store.layer_path(chain_id)).size
    with contextlib.suppress(Exception):
        return engine.storage.diff_size(layerlib.layer_id(chain_id), None)
    return 0


def find(engine, store) -> list[Item]:
    """Every temporary or half-made thing of the root, in progress (``live``) or debris. Reads only."""
    from pallet.kernel.images import layers as layerlib
    from pallet.kernel.images.records import read_layer

    found = temp_items(engine, store)
    journals: list[tuple[Path, int | None, list[str]]] = []
    for path in store.journal_dir.iterdir() if store.journal_dir.is_dir() else ():
        with contextlib.suppress(OSError):
            journals.append((path, owner_pid(path.name), path.read_text().splitlines()))
    in_progress = set()
    for _path, pid, lines in journals:
        if pid and alive(pid):
            in_progress.update(line.partition(" ")[2] for line in lines)
    images = store.all()
    used_layers = {c for record in images for c in record.layers}
    leases = {}
    for path in store.leases.dir.iterdir() if store.leases.dir.is_dir() else ():
        if not path.name.startswith("."):
            with contextlib.suppress(OSError, ValueError):
                leases[path.name] = json.loads(path.read_text())
    for entry in leases.values():
        with contextlib.suppress(TypeError, ValueError):
            if alive(int(entry.get("pid") or 0)):
                used_layers.update(entry.get("layers") or [])
    live_blobs = store.live_blobs()
    recorded = {}
    for path in store.layers_dir.iterdir() if store.layers_dir.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, TypeError):
            recorded["sha256:" + path.name] = read_layer(path)
    used_layers |= store.pinned_layers(recorded)   # the build cache's unpacked layers are not debris
    for chain_id, layer in recorded.items():
        if chain_id in used_layers or chain_id in in_progress:
            live_blobs.add(layer.blob)
    counted = set()
    for path, pid, lines in journals:
        live = bool(pid) and alive(pid)
        found.append(Item(str(path), "journal of an interrupted transaction" if not live else "journal of a "
                          "running transaction", size_of(path), pid, live))
        if live:
            continue
        for line in lines:
            kind, _, name = line.partition(" ")
            key = f"{kind}:{name}"
            if key in counted or name in in_progress:
                continue
            if kind == "layer" and name not in used_layers and (name in recorded or engine.storage.exists(
                    layerlib.layer_id(name))):
                counted.add(key)
                found.append(Item(key, "layer added by an interrupted transaction",
                                  _layer_size(engine, store, name), pid, False))
            elif kind == "blob" and name not in live_blobs and store.blobs.has(name):
                counted.add(key)
                found.append(Item(key, "blob added by an interrupted transaction",
                                  store.blobs.size(name), pid, False))
    containers = Path(engine.root) / "containers"
    for name, entry in leases.items():
        with contextlib.suppress(TypeError, ValueError):
            pid = int(entry.get("pid") or 0)
            if alive(pid):
                continue
            size = 0
            if not (containers / name).exists():
                with contextlib.suppress(Exception):
                    if engine.storage.exists(name):
                        size = engine.storage.diff_size(name, None)
            found.append(Item(str(store.leases.dir / name), "lease of an interrupted create", size, pid, False))
    for chain_id in sorted(set(recorded) - used_layers - in_progress):
        if "layer:" + chain_id not in counted:
            found.append(Item("layer:" + chain_id, "layer no image uses", recorded[chain_id].size, None, False))
    for digest in sorted(store.blobs.digests() - live_blobs - in_progress):
        if "blob:" + digest not in counted:
            found.append(Item("blob:" + digest, "blob no image or layer needs", store.blobs.size(digest), None,
                              False))
    return found


def unheld(engine, store) -> list[Item]:
    """The debris no live process holds: what a prune may remove (measure it before taking the lock)."""
    return [item for item in find(engine, store) if not item.live]


def remove(engine, store, container_ids: set[str], before: list[Item] | None = None) -> tuple[list[Item], int]:
    """Remove the debris (never what a running process holds); return the items gone and their bytes.

    ``before`` is the debris as measured before the caller took the store lock (taking it already
    sweeps dead temp files and rolls back dead journals); measured here when not given.
    """
    from pallet.kernel.storage.layerids import sweep_leftovers

    if before is None:
        before = find(engine, store)
    with store.locked():
        store.sweep(container_ids)
        for directory in driver_dirs(engine):
            sweep_leftovers(directory)
        after = {item.key for item in find(engine, store)}
    gone = [item for item in before if not item.live and item.key not in after]
    return gone, sum(item.size for item in gone)
