"""``pallet system check [--repair]``: verify a root's stores against each other; report and remove debris.

Checked, under the image store's lock (so no pull, rmi or create changes things meanwhile):

- every blob's content against its digest (a corrupt blob);
- every image record: its config and manifest blobs, a layer record and a driver layer for each
  of its layers; every tag names an existing image;
- every layer record: its driver layer exists; a record no image, lease or build cache pin needs is
  an orphan;
- every 64-hex driver layer: an image's layer or a container's read-write layer, else an orphan;
- every blob no image, layer record or pin needs (an orphan blob);
- every container record of the current driver: its read-write layer and its image's top layer;
  a running one has a live monitor (else it is unsupervised: nobody keeps its log or its exit);
- leases whose process died; crash debris: blob temp files, the driver's ``.tmp-*``/``.rm-*``.

A :class:`Finding` says what is wrong, how many bytes it holds and whether ``--repair`` may
remove it: only what nothing references (orphans, debris, stale leases, dangling tags) and
corrupt blobs — an image that needed one is then removed too, unless a container uses it.
Damaged containers are reported, never removed: ``rm`` them. A container running without its
monitor (killed) is stopped by ``--repair`` and its exit recorded, as the next command would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.debris import size_of
from pallet.kernel.errors import PalletError


@dataclass
class Finding:
    kind: str          # blob, image, layer, container, lease, tag, debris
    name: str
    problem: str
    size: int = 0
    repairable: bool = False
    path: Path | None = None   # what --repair deletes (a file or directory), when it is a path


def _digest_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _debris(engine, store) -> list[Finding]:
    """Temp files and half-made driver layers of dead processes. A live process's are its work in
    progress (a commit stages its layer blob outside the store lock, a load spools stdin): they are
    no problem, and ``--repair`` must never take them from under it."""
    from pallet.kernel import debris

    return [Finding("debris", item.key, item.what, item.size, True, Path(item.key))
            for item in debris.temp_items(engine, store) if not item.live]


def check(engine) -> list[Finding]:
    """Every problem of the root (nothing is changed, except that the store lock is taken)."""
    from pallet.kernel import lifecycle, procs
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import layers as layerlib
    from pallet.kernel.images import manifest as mf
    from pallet.kernel.images.records import read_image, read_layer

    store = ImageStore(engine)
    driver = engine.storage
    findings: list[Finding] = []
    with store.locked():
        findings += _debris(engine, store)       # before driver.layers(), which sweeps some of it
        stale = [p for p in store.leases.dir.iterdir()] if store.leases.dir.is_dir() else []
        live_leases = store.leases.entries(sweep=False)
        for path in stale:
            if path.name not in live_leases and not path.name.startswith("."):
                findings.append(Finding("lease", path.name, "lease of a process that died", 0, True, path))
        corrupt = set()
        for digest in sorted(store.blobs.digests()):
            path = store.blobs.path(digest)
            with contextlib.suppress(FileNotFoundError):
                if _digest_of(path) != digest:
                    corrupt.add(digest)
                    findings.append(Finding("blob", digest, "content does not match its digest",
                                            size_of(path), True, path))
        images, layer_users = {}, {}
        for path in sorted(store.images_dir.iterdir()) if store.images_dir.is_dir() else []:
            image_id = "sha256:" + path.name
            try:
                record = read_image(path)
            except (OSError, ValueError, TypeError):
                findings.append(Finding("image", image_id, "unreadable image record", size_of(path), True, path))
                continue
            images[image_id] = record
            problems = []
            for digest, what in ((record.id, "config"), (record.manifest_digest, "manifest")):
                if not store.blobs.has(digest):
                    problems.append(f"{what} blob {digest} is missing")
                elif digest in corrupt:
                    problems.append(f"{what} blob {digest} is corrupt")
            if record.manifest_digest in store.blobs.digests() and record.manifest_digest not in corrupt:
                with contextlib.suppress(PalletError, ValueError):
                    for layer in mf.parse_manifest(store.blobs.read(record.manifest_digest)).layers:
                        if layer.digest in corrupt:
                            problems.append(f"layer blob {layer.digest} is corrupt")
            for chain_id in record.layers:
                layer_users.setdefault(chain_id, []).append(image_id)
                if not store.layer_path(chain_id).exists():
                    problems.append(f"layer record {chain_id} is missing")
                elif not driver.exists(layerlib.layer_id(chain_id)):
                    problems.append(f"layer {chain_id} is missing from the {engine.storage_driver_name} driver")
            for problem in problems:
                findings.append(Finding("image", image_id, problem, 0, True))
        for name, image_id in sorted(store.tags().items()):
            if image_id not in images:
                findings.append(Finding("tag", name, f"names image {image_id}, which does not exist", 0, True))
        leased_layers = {c for e in live_leases.values() for c in e.get("layers") or []}
        leased_layers |= store.pinned_layers()   # the build cache's unpacked layers
        recorded = set()
        for path in sorted(store.layers_dir.iterdir()) if store.layers_dir.is_dir() else []:
            chain_id = "sha256:" + path.name
            recorded.add(chain_id)
            try:
                read_layer(path)
            except (OSError, ValueError, TypeError):
                findings.append(Finding("layer", chain_id, "unreadable layer record", size_of(path), True, path))
                continue
            if chain_id not in layer_users and chain_id not in leased_layers:
                findings.append(Finding("layer", chain_id, "no image uses this layer (orphan)", 0, True))
        containers = ContainerStore(engine).all()
        mine = [c for c in containers if (c.storage_driver or engine.storage_driver_name) == engine.storage_driver_name]
        container_ids = {c.id for c in containers} | set(live_leases)   # a create between layer and record
        for lid in driver.layers():
            if len(lid) == 64 and all(ch in "0123456789abcdef" for ch in lid):
                if "sha256:" + lid not in recorded and lid not in container_ids:
                    findings.append(Finding("layer", "sha256:" + lid, "driver layer with no record (orphan)",
                                            0, True))
        for record in containers:
            if lifecycle.unsupervised(record):
                findings.append(Finding("container", record.id, "running, but its monitor is gone (unsupervised)",
                                        0, True))
            elif record.running and not procs.alive(record.pid, record.pid_start_time) \
                    and not lifecycle.monitor_alive(record):
                findings.append(Finding("container", record.id, "exited, but nothing recorded its exit", 0, True))
        for record in mine:
            if not driver.exists(record.id):
                findings.append(Finding("container", record.id, "its read-write layer is missing"))
            if record.image_top_layer and not driver.exists(record.image_top_layer):
                findings.append(Finding("container", record.id,
                                        f"its image layer {record.image_top_layer} is missing"))
        live_blobs = store.live_blobs()
        for chain_id in recorded:
            with contextlib.suppress(OSError, ValueError, TypeError):
                live_blobs.add(read_layer(store.layer_path(chain_id)).blob)
        for digest in sorted(store.blobs.digests() - live_blobs - corrupt):
            path = store.blobs.path(digest)
            findings.append(Finding("blob", digest, "no image or layer needs this blob (orphan)", size_of(path),
                                    True, path))
    return findings


def repair(engine, findings: list[Finding]) -> list[str]:
    """Remove what ``findings`` marks repairable; return one line per action taken."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import layers as layerlib

    store = ImageStore(engine)
    done = []
    used_images = {c.image_id for c in ContainerStore(engine).all()}
    for finding in findings:
        # Outside the store lock: settling may fork a restarter, which must not inherit the lock.
        if finding.kind == "container" and finding.repairable:
            with contextlib.suppress(PalletError):
                settled = lifecycle.settle_unsupervised(engine, ContainerStore(engine).load(finding.name))
                done.append(f"settled container {finding.name} ({finding.problem}; exit code "
                            f"{settled.exit_code} recorded)")
    with store.locked():
        for finding in findings:
            if not finding.repairable or finding.kind == "container":
                continue
            if finding.kind == "image":
                if finding.name in used_images:
                    continue
                with contextlib.suppress(PalletError, FileNotFoundError):
                    tags = {k: v for k, v in store.tags().items() if v != finding.name}
                    store._write_tags(tags)
                    store.image_path(finding.name).unlink()
                    done.append(f"removed image {finding.name} ({finding.problem})")
            elif finding.kind == "tag":
                tags = store.tags()
                if tags.pop(finding.name, None):
                    store._write_tags(tags)
                    done.append(f"removed tag {finding.name} ({finding.problem})")
            elif finding.kind == "layer" and finding.path is None:
                lid = layerlib.layer_id(finding.name)
                with contextlib.suppress(PalletError):
                    if engine.storage.exists(lid):
                        engine.storage.remove(lid)
                with contextlib.suppress(FileNotFoundError):
                    store.layer_path(finding.name).unlink()
                done.append(f"removed layer {finding.name} ({finding.problem})")
            elif finding.path is not None:
                if finding.path.is_dir() and not finding.path.is_symlink():
                    shutil.rmtree(finding.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        finding.path.unlink()
                done.append(f"removed {finding.kind} {finding.name} ({finding.problem}, {finding.size} bytes)")
        # Removing images can orphan more layers and blobs: collect them as prune does.
        store.sweep({c.id for c in ContainerStore(engine).all()})
    return done
