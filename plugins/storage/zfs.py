"""zfs storage driver: each layer a dataset, each child a clone of a snapshot of its parent.

Layer ``ID`` is the dataset ``<zfs.fsname>/ID``, mounted by zfs itself at ``<home>/graph/ID``
(its ``mountpoint`` property): zfs-fuse supports automatic mountpoints only, so there is no
legacy mount and ``get`` returns the directory zfs keeps mounted. A child ``C`` of ``P`` is a
clone of the snapshot ``P@C``; removing ``C`` destroys that snapshot too.

The driver speaks pyzfs's ``libzfs_core`` API and nothing else for changing datasets: the real
pyzfs where it imports and initialises, else ``zfs_lzc``, the same API over the zfs commands (as
moby's driver drives them). What libzfs_core lacks (pools, property reads, mounts) comes from
``zfs_lzc.extension`` on both backends.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.plugins.storage import zfs_lzc
from pallet.plugins.storage.zfs_lzc import extension as ext

OPTIONS = ("zfs.fsname", "size")
REMOVED = ".removed."             # prefix of removed layers whose snapshots still have clones
CANMOUNT_NOAUTO = 2               # libzfs_core takes index properties as numbers
BUSY_RETRIES = 50


class ZfsError(PalletError):
    """A zfs operation failed; the message is pyzfs's description and, on the commands, what zfs said."""


@dataclass(frozen=True)
class Backend:
    """The libzfs_core the driver calls, and why that one."""

    name: str                     # "libzfs_core" (pyzfs) or "zfs commands"
    lzc: ModuleType
    errors: ModuleType            # its ``exceptions`` module
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


# What the driver calls; pyzfs's is_supported says whether the installed C library has each.
NEEDED = ("lzc_create", "lzc_snapshot", "lzc_clone", "lzc_destroy", "lzc_destroy_snaps", "lzc_exists", "lzc_rename")


@functools.cache
def backend() -> Backend:
    """pyzfs's libzfs_core when it imports, initialises and has every call needed, else the zfs commands."""
    try:
        import libzfs_core
        errors = importlib.import_module("libzfs_core.exceptions")
    except ImportError as exc:
        return _commands_backend(f"pyzfs is not installed: {exc}")
    try:
        # The first call into pyzfs opens and initialises the C library (and /dev/zfs).
        lacking = [name for name in NEEDED if not libzfs_core.is_supported(getattr(libzfs_core, name))]
    except AttributeError as exc:
        return _commands_backend(f"this pyzfs is too old: {exc}")
    except (OSError, errors.ZFSError) as exc:
        return _commands_backend(f"pyzfs's libzfs_core does not initialise: {exc}")
    if lacking:
        return _commands_backend(f"the installed libzfs_core lacks {', '.join(lacking)}")
    return Backend("libzfs_core", libzfs_core, errors, "pyzfs imports and initialises")


def _commands_backend(reason: str) -> Backend:
    return Backend("zfs commands", zfs_lzc, zfs_lzc.exceptions, reason)


def _zfs_errors() -> tuple[type[Exception], ...]:
    return backend().errors.ZFSError, zfs_lzc.exceptions.ZFSError


def _is_busy(exc: BaseException) -> bool:
    busy = (backend().errors.DatasetBusy, zfs_lzc.exceptions.DatasetBusy)
    return isinstance(exc, busy) or any(_is_busy(each) for each in getattr(exc, "errors", ()))


def _retry_busy(call, *args):
    """zfs-fuse may call a dataset busy for a moment after its last use: retry briefly."""
    for attempt in range(BUSY_RETRIES):
        try:
            return call(*args)
        except _zfs_errors() as exc:
            if not _is_busy(exc) or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.1)


def _reported(method):
    """A zfs error that reaches the user becomes one line (a PalletError), not a traceback."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except _zfs_errors() as exc:
            said = getattr(exc, "output", "") or "; ".join(
                each.output for each in getattr(exc, "errors", ()) if getattr(each, "output", ""))
            raise ZfsError(f"zfs: {exc}" + (f" ({said})" if said else "")) from None
    return wrapper


class ZfsDriver(StorageDriver):
    description = "zfs datasets, snapshots and clones"

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if host.which("zfs") is None or host.which("zpool") is None:
            return Availability.no("the zfs and zpool commands are not installed")
        try:
            return cls._probe(home, options or {})
        except _zfs_errors() as exc:
            return Availability.no(f"zfs is not reachable: {getattr(exc, 'output', '') or exc}")

    @classmethod
    def _probe(cls, home, options) -> Availability:
        names = [name.decode() for name in ext.pools()]
        if not names:
            return Availability.no("no zfs pool is imported")
        fsname = options.get("zfs.fsname")
        if home is not None and not fsname:
            fsname = cls.recorded_fsname(home) or cls.dataset_of(home)
            if not fsname:
                return Availability.no(f"{home} is not on a zfs dataset; set --storage-opt zfs.fsname=POOL/DATASET")
        if fsname and not backend().lzc.lzc_exists(fsname.encode()):
            return Availability.no(f'zfs.fsname "{fsname}" does not exist (pools: {", ".join(names)})')
        return Availability.ok(f"pools: {', '.join(names)}; backend: {backend()}")

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
        self.lzc = backend().lzc
        self.errors = backend().errors

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
            name = ext.mounted_at(mountpoint)
        except _zfs_errors():
            return None
        return name.decode() if name else None

    def _dataset(self, layer_id: str) -> bytes:
        return f"{self.fsname}/{self.check_id(layer_id)}".encode()

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

            properties[b"quota"] = parse_size(size, "size")
        self._create(layer_id, parent, properties)

    def _record(self, layer_id: str) -> Path:
        """``<home>/layers/ID`` holds the parent's id: exists() and layers() without asking the daemon."""
        return self.home / "layers" / layer_id

    @_reported
    def _create(self, layer_id: str, parent: str | None, properties: dict[bytes, object]) -> None:
        from pallet.kernel.fsutil import atomic_write

        dataset = self._dataset(layer_id)
        if self.exists(layer_id):
            raise Conflict(f"layer {layer_id} already exists")
        if parent and not self.exists(parent):
            raise NotFound(f"parent layer {parent} does not exist")
        # noauto: zfs mounts the dataset only when get() asks, so an unused layer holds no mount.
        properties = {b"mountpoint": str(self._mountpoint(layer_id)).encode(), b"canmount": CANMOUNT_NOAUTO,
                      **properties}
        self.graph.mkdir(parents=True, exist_ok=True)
        if not self.recorded_fsname(self.home):
            atomic_write(self.home / "fsname", (self.fsname + "\n").encode())
        # The record goes first: after a crash, remove() finds and destroys a half-made layer.
        atomic_write(self._record(layer_id), (parent or "").encode())
        try:
            if not parent:
                self.lzc.lzc_create(dataset, props=properties)
                return
            snapshot = self._dataset(parent) + b"@" + layer_id.encode()
            self.lzc.lzc_snapshot([snapshot])
            try:
                self.lzc.lzc_clone(dataset, snapshot, properties)
            except self.errors.ZFSError:
                _retry_busy(self.lzc.lzc_destroy_snaps, [snapshot], False)
                raise
        except BaseException:
            self._record(layer_id).unlink(missing_ok=True)
            raise

    @_reported
    def remove(self, layer_id):
        from pallet.kernel.fsutil import locked

        dataset = self._dataset(layer_id)
        with locked(self.home / "lock"):
            try:
                parent = self._record(layer_id).read_text() or None
            except FileNotFoundError:
                return
            if _is_mountpoint(self._mountpoint(layer_id)):
                _retry_busy(ext.unmount, dataset)
            self._count_file(layer_id).unlink(missing_ok=True)
            if parent and self.exists(parent):
                origin = self._dataset(parent) + b"@" + layer_id.encode()
            else:  # the parent was removed first and lives on under a hidden name
                origin = self._origin(dataset)
            if not self._destroy(dataset):
                # Children are clones of this layer's snapshots: keep its blocks under a hidden
                # name until the last child goes (removing a parent first must not break children).
                hidden = f"{self.fsname}/{REMOVED}{layer_id}.{os.urandom(4).hex()}".encode()
                _retry_busy(self.lzc.lzc_rename, dataset, hidden)
                origin = None
            self._collect(origin)
            self._record(layer_id).unlink()
            try:
                os.rmdir(self._mountpoint(layer_id))
            except FileNotFoundError:
                pass

    def _origin(self, dataset: bytes) -> bytes | None:
        """The snapshot ``dataset`` was cloned from (None for none, or when the dataset is gone)."""
        try:
            origin = ext.get_props(dataset, "origin").get("origin", "-")
        except zfs_lzc.exceptions.DatasetNotFound:
            return None
        return None if origin in ("", "-") else origin.encode()

    def _destroy(self, dataset: bytes) -> bool:
        """Destroy ``dataset`` and its snapshots; False, destroying nothing, while a snapshot has clones."""
        try:
            snapshots = ext.snapshots(dataset)
        except zfs_lzc.exceptions.DatasetNotFound:
            return True  # a half-made layer: the record was written, the dataset never was
        if snapshots:
            try:
                _retry_busy(self.lzc.lzc_destroy_snaps, snapshots, False)
            except self.errors.SnapshotDestructionFailure as exc:
                if any(isinstance(each, self.errors.SnapshotIsCloned) for each in exc.errors):
                    return False
                raise
        try:
            _retry_busy(self.lzc.lzc_destroy, dataset)
        except self.errors.DatasetNotFound:
            pass
        return True

    def _collect(self, origin: bytes | None) -> None:
        """Destroy the snapshot a removed child was cloned from, then any hidden parent left with no children."""
        hidden = f"{self.fsname}/{REMOVED}".encode()
        while origin:
            parent = origin.split(b"@", 1)[0]
            try:
                _retry_busy(self.lzc.lzc_destroy_snaps, [origin], False)
            except self.errors.SnapshotDestructionFailure as exc:
                if any(isinstance(each, self.errors.SnapshotIsCloned) for each in exc.errors):
                    return
                raise
            if not parent.startswith(hidden):
                return
            try:
                if ext.snapshots(parent):
                    return  # other children still hang on this hidden parent
            except zfs_lzc.exceptions.DatasetNotFound:
                return
            origin = self._origin(parent)
            try:
                _retry_busy(self.lzc.lzc_destroy, parent)
            except self.errors.DatasetNotFound:
                return

    @_reported
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
                    _retry_busy(ext.mount, dataset)
                except zfs_lzc.exceptions.DatasetNotFound:
                    raise NotFound(f"layer {layer_id} does not exist") from None
            self._count_file(layer_id).parent.mkdir(parents=True, exist_ok=True)
            self._count_file(layer_id).write_text(str(count + 1))
            return mountpoint

    @_reported
    def put(self, layer_id):
        from pallet.kernel.fsutil import locked

        with locked(self.home / "lock"):
            count = self._count(layer_id) - 1
            if count > 0:
                self._count_file(layer_id).write_text(str(count))
                return
            if _is_mountpoint(self._mountpoint(layer_id)):
                _retry_busy(ext.unmount, self._dataset(layer_id))
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

    @_reported
    def metadata(self, layer_id):
        dataset = self._dataset(layer_id)
        props = ext.get_props(dataset, "origin", "mountpoint", "used", "quota")
        return {"Dataset": dataset.decode(), "Mountpoint": props.get("mountpoint", ""),
                "Origin": props.get("origin", "-"), "Used": props.get("used", ""), "Quota": props.get("quota", "")}

    # --- reporting ------------------------------------------------------------------------
    @_reported
    def status(self):
        pool = self.fsname.split("/")[0]
        props = ext.get_props(self.fsname.encode(), "used", "available", "compression", "quota", exact=False)
        health = ext.pool_health(pool.encode())
        return [
            ("Zpool", pool),
            ("Zpool Health", health),
            ("Parent Dataset", self.fsname),
            ("Compression", props.get("compression", "")),
            ("Space Used By Parent", props.get("used", "")),
            ("Space Available", props.get("available", "")),
            ("Parent Quota", "no" if props.get("quota") in ("0", "none", "") else props["quota"]),
            ("Layers", str(len(self.layers()))),
            ("Backend", str(backend())),
        ]


def _is_mountpoint(path: Path) -> bool:
    """Read the mount table rather than ask zfs: one daemon round trip less per get/put."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4].replace("\\040", " ") == target for line in handle)


@hookimpl
def pallet_register_storage_drivers(register):
    register("zfs", ZfsDriver)
