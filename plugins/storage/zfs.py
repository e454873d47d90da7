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

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver
from kernel.errors import Conflict, NotFound, PalletError, UsageError

OPTIONS = ("zfs.fsname", "size")


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
            raise ZfsError(f"{' '.join(args[:2])}: {lines[-1] if lines else f'exit {result.returncode}'}")
        return result.stdout

    def pools(self) -> list[str]:
        return self.run("zpool", "list", "-H", "-o", "name").split()

    def datasets(self, parent: str, depth: int = 1) -> list[str]:
        out = self.run("zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-d", str(depth), "-r", parent)
        return [line for line in out.splitlines() if line and line != parent]

    def mounted_at(self, mountpoint: str) -> str | None:
        """The dataset mounted at ``mountpoint``, if any."""
        for line in self.run("zfs", "list", "-H", "-o", "name,mountpoint", "-t", "filesystem").splitlines():
            name, _, where = line.partition("\t")
            if where == mountpoint:
                return name
        return None

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

    def destroy(self, name: str, recursive: bool = False) -> None:
        """Destroy a dataset or snapshot; zfs-fuse may call a just-used dataset busy, so retry briefly."""
        args = ["zfs", "destroy", *(["-r"] if recursive else []), name]
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
    implemented = True
    commands = ZfsCommands()

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

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
            fsname = cls.dataset_of(home)
            if not fsname:
                return Availability.no(f"{home} is not on a zfs dataset; set --storage-opt zfs.fsname=POOL/DATASET")
        if fsname and not cls.commands.exists(fsname):
            return Availability.no(f'zfs.fsname "{fsname}" does not exist (pools: {", ".join(names)})')
        return Availability.ok(f"pools: {', '.join(names)}")

    def __init__(self, home, options=None):
        super().__init__(home, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise UsageError(f'unknown option "{unknown[0]}" for storage driver "zfs" (known: {", ".join(OPTIONS)})')
        self.fsname = self.options.get("zfs.fsname", "").strip("/") or self.dataset_of(self.home)
        if not self.fsname:
            raise UsageError(f"{self.home} is not on a zfs dataset; set --storage-opt zfs.fsname=POOL/DATASET")
        self.default_size = self.options.get("size")
        self.graph = self.home / "graph"

    @classmethod
    def dataset_of(cls, home) -> str | None:
        """Like moby: without ``zfs.fsname``, layers go under the dataset that holds ``home``."""
        from kernel import host

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
            from kernel.storage.units import parse_size

            properties["quota"] = str(parse_size(size, "size"))
        self._create(layer_id, parent, properties)

    def _create(self, layer_id: str, parent: str | None, properties: dict[str, str]) -> None:
        dataset = self._dataset(layer_id)
        if self.commands.exists(dataset):
            raise Conflict(f"layer {layer_id} already exists")
        properties = {"mountpoint": str(self._mountpoint(layer_id)), **properties}
        self.graph.mkdir(parents=True, exist_ok=True)
        if parent:
            origin = self._dataset(parent)
            if not self.commands.exists(origin):
                raise NotFound(f"parent layer {parent} does not exist")
            snapshot = f"{origin}@{layer_id}"
            self.commands.snapshot(snapshot)
            try:
                self.commands.clone(snapshot, dataset, properties)
            except ZfsError:
                self.commands.destroy(snapshot)
                raise
        else:
            self.commands.create(dataset, properties)

    def remove(self, layer_id):
        dataset = self._dataset(layer_id)
        if not self.commands.exists(dataset):
            return
        origin = self.commands.get(dataset, "origin").get("origin", "-")
        self.commands.destroy(dataset, recursive=True)
        if origin not in ("", "-") and self.commands.exists(origin):
            self.commands.destroy(origin)
        try:
            os.rmdir(self._mountpoint(layer_id))
        except FileNotFoundError:
            pass

    def get(self, layer_id, mount_label=""):
        dataset = self._dataset(layer_id)
        if not self.commands.exists(dataset):
            raise NotFound(f"layer {layer_id} does not exist")
        props = self.commands.get(dataset, "mounted", "mountpoint")
        if props.get("mounted") != "yes":
            self.commands.run("zfs", "mount", dataset)
        return Path(props["mountpoint"])

    def put(self, layer_id):
        """Nothing to release: zfs keeps the dataset mounted at its mountpoint."""

    def exists(self, layer_id):
        return self.commands.exists(self._dataset(layer_id))

    def layers(self):
        if not self.commands.exists(self.fsname):
            return []
        prefix = self.fsname + "/"
        return sorted(name[len(prefix):] for name in self.commands.datasets(self.fsname))

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


@hookimpl
def pallet_register_storage_drivers(register):
    register("zfs", ZfsDriver)
