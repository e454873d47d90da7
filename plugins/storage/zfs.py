"""zfs storage driver: each layer a dataset, each child a clone of a snapshot of its parent.

Layer ``ID`` is the dataset ``<zfs.fsname>/ID``, mounted by zfs itself at ``<home>/graph/ID``
(its ``mountpoint`` property): zfs-fuse supports automatic mountpoints only, so there is no
legacy mount and ``get`` returns the directory zfs keeps mounted. A child ``C`` of ``P`` is
``zfs clone P@C C``; removing ``C`` destroys that snapshot too.

The ``zfs``/``zpool`` commands are driven through ``ZfsCommands`` (as moby's driver does).
A libzfs_core binding could replace that class, but ``pyzfs`` cannot load here: it needs
``libzfs_core``, which does not exist on zfs-fuse hosts such as this one.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError

OPTIONS = ("zfs.fsname", "size")
REMOVED = ".removed."             # prefix of removed layers whose snapshots still have clones


class ZfsError(PalletError):
    """A ``zfs``/``zpool`` command failed; the message is its last line of output."""


class ZfsCommands:
    """The narrow interface the driver needs from zfs: one method per operation, datasets by name."""

    timeout = 60

    def run(self, *args: str) -> str:
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise ZfsError(f"the {args[0]} command is not installed") from None
        except subprocess.TimeoutExpired:
            raise ZfsError(f"{' '.join(args[:2])} timed out after {self.timeout}s") from None
        if result.returncode != 0:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            # zfs explains on the first line and may list datasets after it ("use '-R' to destroy …").
            detail = "; ".join(line.strip() for line in lines) or f"exit {result.returncode}"
            raise ZfsError(f"{' '.join(args[:2])}: {detail}")
        return result.stdout

    def pools(self) -> list[str]:
        return self.run("zpool", "list", "-H", "-o", "name").split()

    def mounted_at(self, mountpoint: str) -> str | None:
        """The dataset mounted at ``mountpoint``, if any."""
        for line in self.run("zfs", "list", "-H", "-o", "name,mountpoint", "-t", "filesystem").splitlines():
            name, _, where = line.partition("\t")
            if where == mountpoint:
                return name
        return None

    def properties(self, name: str, *props: str) -> dict[str, str] | None:
        """Like ``get``, but None when the dataset does not exist."""
        try:
            return self.get(name, *props)
        except ZfsError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def exists(self, name: str) -> bool:
        try:
            self.run("zfs", "list", "-H", "-o", "name", name)
            return True
        except ZfsError:
            return False

    def get(self, name: str, *props: str, exact: bool = True) -> dict[str, str]:
        """Properties of ``name``: exact numbers, or zfs's human-readable ones (``1.2M``)."""
        out = self.run("zfs", "get", "-H", *(["-p"] if exact else []), "-o", "property,value", ",".join(props), name)
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def pool_health(self, pool: str) -> str:
        # zfs-fuse's zpool get has no -H/-o; zpool list does.
        return self.run("zpool", "list", "-H", "-o", "health", pool).strip()

    def create(self, name: str, properties: dict[str, str]) -> None:
        self.run("zfs", "create", *_property_args(properties), name)

    def snapshot(self, snapshot: str) -> None:
        self.run("zfs", "snapshot", snapshot)

    def clone(self, snapshot: str, name: str, properties: dict[str, str]) -> None:
        self.run("zfs", "clone", *_property_args(properties), snapshot, name)

    def rename(self, name: str, new_name: str) -> None:
        self._retry_busy("zfs", "rename", name, new_name)

    def mount(self, name: str) -> None:
        self._retry_busy("zfs", "mount", name)

    def unmount(self, name: str) -> None:
        self._retry_busy("zfs", "unmount", name)

    def destroy(self, name: str, recursive: bool = False) -> None:
        self._retry_busy("zfs", "destroy", *(["-r"] if recursive else []), name)

    def _retry_busy(self, *args: str) -> None:
        """zfs-fuse may call a dataset busy for a moment after its last use: retry briefly."""
        for attempt in range(50):
            try:
                self.run(*args)
                return
            except ZfsError as exc:
                if "busy" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)


def _property_args(properties: dict[str, str]) -> list[str]:
    args = []
    for key, value in properties.items():
        args += ["-o", f"{key}={value}"]
    return args


class ZfsDriver(StorageDriver):
    description = "zfs datasets, snapshots and clones"
    commands = ZfsCommands()

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        options = options or {}
        if host.which("zfs") is None or host.which("zpool") is None:
            return Availability.no("the zfs and zpool commands are not installed")
        try:
            names = cls.commands.pools()
        except ZfsError as exc:
            return Availability.no(f"zfs is not reachable: {exc}")
        if not names:
            return Availability.no("no zfs pool is imported")
        fsname = options.get("zfs.fsname")
        if home is not None and not fsname:
            fsname = cls.recorded_fsname(home) or cls.dataset_of(home)
            if not fsname:
                return Availability.no(f"{home} is not on a zfs dataset; set --storage-opt zfs.fsname=POOL/DATASET")
        if fsname and not cls.commands.exists(fsname):
            return Availability.no(f'zfs.fsname "{fsname}" does not exist (pools: {", ".join(names)})')
        return Availability.ok(f"pools: {', '.join(names)}")

    def __init__(self, context):
        super().__init__(context)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise UsageError(f'unknown option "{unknown[0]}" for storage driver "zfs" (known: {", ".join(OPTIONS)})')
        recorded = self.recorded_fsname(self.home)
        self.fsname = self.options.get("zfs.fsname", "").strip("/") or recorded or self.dataset_of(self.home)
        if not self.fsname:
            raise UsageError(f"{self.home} is not on a zfs dataset; set --storage-opt zfs.fsname=POOL/DATASET")
        if recorded and recorded != self.fsname:
            raise UsageError(f'{self.home} holds layers in zfs dataset "{recorded}", not "{self.fsname}"')
        self.default_size = self.options.get("size")
        self.graph = self.home / "graph"

    @staticmethod
    def recorded_fsname(home) -> str | None:
        """The parent dataset the first layer was made in (``<home>/fsname``), so later commands need no option."""
        try:
            return (Path(home) / "fsname").read_text().strip() or None
        except FileNotFoundError:
            return None

    @classmethod
    def dataset_of(cls, home) -> str | None:
        """Like moby: without ``zfs.fsname``, layers go under the dataset that holds ``home``."""
        from pallet.kernel import host

        fstype, mountpoint = host.filesystem_of(home)
        if fstype not in ("zfs", "fuse.zfs"):
            return None
        try:
            return cls.commands.mounted_at(mountpoint)
        except ZfsError:
            return None

    def _dataset(self, layer_id: str) -> str:
        if not layer_id or "/" in layer_id or "@" in layer_id or layer_id.startswith("."):
            raise UsageError(f'invalid layer id "{layer_id}"')
        return f"{self.fsname}/{layer_id}"

    def _mountpoint(self, layer_id: str) -> Path:
        return self.graph / layer_id

    # --- layers ---------------------------------------------------------------------------
    def create(self, layer_id, parent=None):
        self._create(layer_id, parent, {})

    def create_rw(self, layer_id, parent=None, opts=None):
        opts = dict(opts or {})
        unknown = sorted(set(opts) - {"size"})
        if unknown:
            raise UsageError(f'unknown storage option "{unknown[0]}" for zfs (known: size)')
        properties = {}
        size = opts.get("size") or self.default_size
        if size:
            from pallet.kernel.storage.units import parse_size

            properties["quota"] = str(parse_size(size, "size"))
        self._create(layer_id, parent, properties)

    def _record(self, layer_id: str) -> Path:
        """``<home>/layers/ID`` holds the parent's id: exists() and layers() without asking the daemon."""
        return self.home / "layers" / layer_id

    def _create(self, layer_id: str, parent: str | None, properties: dict[str, str]) -> None:
        from pallet.kernel.fsutil import atomic_write

        dataset = self._dataset(layer_id)
        if self.exists(layer_id):
            raise Conflict(f"layer {layer_id} already exists")
        if parent and not self.exists(parent):
            raise NotFound(f"parent layer {parent} does not exist")
        # noauto: zfs mounts the dataset only when get() asks, so an unused layer holds no mount.
        properties = {"mountpoint": str(self._mountpoint(layer_id)), "canmount": "noauto", **properties}
        self.graph.mkdir(parents=True, exist_ok=True)
        if not self.recorded_fsname(self.home):
            atomic_write(self.home / "fsname", (self.fsname + "\n").encode())
        # The record goes first: after a crash, remove() finds and destroys a half-made layer.
        atomic_write(self._record(layer_id), (parent or "").encode())
        try:
            if not parent:
                self.commands.create(dataset, properties)
                return
            snapshot = f"{self._dataset(parent)}@{layer_id}"
            self.commands.snapshot(snapshot)
            try:
                self.commands.clone(snapshot, dataset, properties)
            except ZfsError:
                self.commands.destroy(snapshot)
                raise
        except BaseException:
            self._record(layer_id).unlink(missing_ok=True)
            raise

    def remove(self, layer_id):
        from pallet.kernel.fsutil import locked

        dataset = self._dataset(layer_id)
        with locked(self.home / "lock"):
            try:
                parent = self._record(layer_id).read_text() or None
            except FileNotFoundError:
                return
            if _is_mountpoint(self._mountpoint(layer_id)):
                self.commands.unmount(dataset)
            self._count_file(layer_id).unlink(missing_ok=True)
            if parent and self.exists(parent):
                origin = f"{self._dataset(parent)}@{layer_id}"
            else:  # the parent was removed first and lives on under a hidden name
                props = self.commands.properties(dataset, "origin") or {}
                origin = props.get("origin", "-")
            try:
                self.commands.destroy(dataset, recursive=True)
            except ZfsError as exc:
                if "dependent clones" in str(exc):
                    # Children are clones of this layer's snapshots: keep its blocks under a hidden
                    # name until the last child goes (removing a parent first must not break children).
                    self.commands.rename(dataset, f"{self.fsname}/{REMOVED}{layer_id}.{os.urandom(4).hex()}")
                    origin = "-"
                elif "does not exist" not in str(exc):
                    raise
            self._collect(origin)
            self._record(layer_id).unlink()
            try:
                os.rmdir(self._mountpoint(layer_id))
            except FileNotFoundError:
                pass

    def _collect(self, origin: str) -> None:
        """Destroy the snapshot a removed child was cloned from, then any hidden parent left with no children."""
        while origin not in ("", "-"):
            parent = origin.split("@", 1)[0]
            try:
                self.commands.destroy(origin)
                if not parent.startswith(f"{self.fsname}/{REMOVED}"):
                    return
                origin = self.commands.get(parent, "origin").get("origin", "-")
                self.commands.destroy(parent, recursive=True)
            except ZfsError as exc:
                if "dependent clones" in str(exc) or "does not exist" in str(exc):
                    return
                raise

    def get(self, layer_id, mount_label=""):
        from pallet.kernel.fsutil import locked

        dataset = self._dataset(layer_id)
        mountpoint = self._mountpoint(layer_id)
        with locked(self.home / "lock"):
            if not self.exists(layer_id):
                raise NotFound(f"layer {layer_id} does not exist")
            mounted = _is_mountpoint(mountpoint)
            count = self._count(layer_id) if mounted else 0  # a count without a mount is stale (reboot)
            if not mounted:
                try:
                    self.commands.mount(dataset)
                except ZfsError as exc:
                    if "does not exist" in str(exc):
                        raise NotFound(f"layer {layer_id} does not exist") from None
                    raise
            self._count_file(layer_id).parent.mkdir(parents=True, exist_ok=True)
            self._count_file(layer_id).write_text(str(count + 1))
            return mountpoint

    def put(self, layer_id):
        from pallet.kernel.fsutil import locked

        with locked(self.home / "lock"):
            count = self._count(layer_id) - 1
            if count > 0:
                self._count_file(layer_id).write_text(str(count))
                return
            if _is_mountpoint(self._mountpoint(layer_id)):
                self.commands.unmount(self._dataset(layer_id))
            self._count_file(layer_id).unlink(missing_ok=True)

    def _count_file(self, layer_id: str) -> Path:
        return self.home / "mounts" / layer_id

    def _count(self, layer_id: str) -> int:
        try:
            return int(self._count_file(layer_id).read_text() or 0)
        except FileNotFoundError:
            return 0

    def exists(self, layer_id):
        return self._record(layer_id).exists()

    def layers(self):
        try:
            return sorted(name for name in os.listdir(self.home / "layers") if not name.startswith("."))
        except FileNotFoundError:
            return []

    def metadata(self, layer_id):
        dataset = self._dataset(layer_id)
        props = self.commands.get(dataset, "origin", "mountpoint", "used", "quota")
        return {"Dataset": dataset, "Mountpoint": props.get("mountpoint", ""),
                "Origin": props.get("origin", "-"), "Used": props.get("used", ""), "Quota": props.get("quota", "")}

    # --- reporting ------------------------------------------------------------------------
    def status(self):
        pool = self.fsname.split("/")[0]
        props = self.commands.get(self.fsname, "used", "available", "compression", "quota", exact=False)
        health = self.commands.pool_health(pool)
        return [
            ("Zpool", pool),
            ("Zpool Health", health),
            ("Parent Dataset", self.fsname),
            ("Compression", props.get("compression", "")),
            ("Space Used By Parent", props.get("used", "")),
            ("Space Available", props.get("available", "")),
            ("Parent Quota", "no" if props.get("quota") in ("0", "none", "") else props["quota"]),
            ("Layers", str(len(self.layers()))),
        ]


def _is_mountpoint(path: Path) -> bool:
    """Read the mount table rather than ask zfs: one daemon round trip less per get/put."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4].replace("\\040", " ") == target for line in handle)


@hookimpl
def pallet_register_storage_drivers(register):
    register("zfs", ZfsDriver)
