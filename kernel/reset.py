"""``pallet system reset``: remove everything a root made, inside it and outside it.

Outside the root a root has: its networks' devices (the default bridge, veths), its nftables
table and its record under the run root's network registry (the bridge driver removes both with
its last network), DNS responders, its run root (netns pins, run dirs) and the cgroup parents
its containers were made under. A reset removes the containers first (their mounts, netns,
veths, cgroups), then tears down every network including the predefined ones, removes the
volumes, every storage-driver layer (so a driver that keeps data outside plain directories —
zfs datasets, btrfs subvolumes, device-mapper devices — gives it back) and finally the root's
and the run root's contents. The cgroup parents are removed when empty (other roots may use
the shared ``pallet`` parent: it stays while they do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from pallet.kernel.errors import PalletError


def _cgroup_parents(records) -> set[str]:
    from pallet.kernel.spec import cgroups_path

    parents = {"/pallet"}
    for record in records:
        path = cgroups_path(record.id, (record.host_config or {}).get("CgroupParent"))
        parents.add(path.rsplit("/", 1)[0] or "/pallet")
    return {p for p in parents if p not in ("", "/")}


def _remove_cgroup_parents(parents: set[str]) -> list[str]:
    from pallet.kernel.cgroups import ROOT

    removed = []
    bases = [ROOT] if (ROOT / "cgroup.controllers").exists() else [p for p in ROOT.iterdir() if p.is_dir()]
    for base in bases:
        for parent in sorted(parents, key=len, reverse=True):
            path = base / parent.strip("/")
            with contextlib.suppress(OSError):
                path.rmdir()          # fails while any cgroup (another root's container) is inside
                removed.append(str(path))
    return removed


def _clear(directory: Path, keep: tuple[str, ...] = ()) -> None:
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def reset(engine) -> list[str]:
    """Remove everything; return what was done, one line each. Raises if something could not go."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    done, errors = [], []
    records = ContainerStore(engine).all()
    parents = _cgroup_parents(records)
    for record in records:
        try:
            lifecycle.remove(engine, record, force=True, volumes=True)
            done.append(f"removed container {record.id}")
        except PalletError as exc:
            errors.append(f"container {record.short_id}: {exc}")
    if (Path(engine.root) / "networks").exists():
        from pallet.kernel.network.store import NetworkStore

        from pallet.kernel.cluster import mesh

        try:
            mesh.teardown(engine)  # the routing mesh's sandbox is an endpoint of the overlay networks
            NetworkStore(engine).teardown_all()
            done.append("removed every network (bridges, nftables table, network registry record)")
        except PalletError as exc:
            errors.append(str(exc))
    with contextlib.suppress(ImportError):
        from pallet.kernel.volumes import VolumeStore

        volumes = VolumeStore(engine)
        for volume in volumes.all():
            try:
                volumes.remove(volume.name, force=True)
                done.append(f"removed volume {volume.name}")
            except PalletError as exc:
                errors.append(f"volume {volume.name}: {exc}")
    try:
        driver = engine.storage
        for layer in reversed(driver.layers()):   # children after parents in the listing: reversed
            with contextlib.suppress(PalletError):
                driver.remove(layer)
        leftover = driver.layers()
        for layer in leftover:                     # a second pass for any order the driver needs
            with contextlib.suppress(PalletError):
                driver.remove(layer)
        if driver.layers():
            errors.append(f"storage: layers left: {', '.join(driver.layers()[:3])}")
        else:
            done.append(f"removed every {engine.storage_driver_name} layer")
    except PalletError as exc:
        errors.append(f"storage: {exc}")
    if errors:
        raise PalletError("reset incomplete (nothing else was removed): " + "; ".join(errors))
    if os.path.realpath(engine.run_root) not in ("/run", "/"):
        _clear(Path(engine.run_root))
    _clear(Path(engine.root))
    done.append(f"removed the contents of {engine.root} and {engine.run_root}")
    done += [f"removed cgroup {path}" for path in _remove_cgroup_parents(parents)]
    return done
