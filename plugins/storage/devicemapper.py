"""devicemapper storage driver: thin-pool devices and snapshots, as Docker's direct-lvm/loop-lvm modes.

A thin pool (``dm.thinpooldev``, or one built from sparse data/metadata files on loop devices)
holds one thin device per layer. The base device gets a filesystem (``dm.fs``); a layer
without a parent is a snapshot of the base, a child a snapshot of its parent
(``create_snap`` message). ``get`` activates the thin device and mounts it; ``put`` undoes both.

The dmsetup tables and command lines are built by pure functions (unit-tested); ``DmSetup``
runs them. On a kernel without device-mapper the probe says so and nothing is attempted.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from dataclasses import asdict, dataclass

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError

SECTOR = 512
FILESYSTEMS = ("ext4", "xfs")
DEFAULTS = {
    "dm.basesize": "10G", "dm.fs": "ext4", "dm.loopdatasize": "100G", "dm.loopmetadatasize": "2G",
    "dm.blocksize": "64K", "dm.thinpooldev": "",
}


@dataclass(frozen=True)
class DmOptions:
    """The driver's options, parsed and checked."""

    thinpooldev: str
    basesize: int
    fs: str
    loopdatasize: int
    loopmetadatasize: int
    blocksize: int

    @classmethod
    def parse(cls, options: dict[str, str]) -> DmOptions:
        from pallet.kernel.storage.units import parse_size

        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise UsageError(f'unknown option "{unknown[0]}" for storage driver "devicemapper" '
                             f"(known: {', '.join(sorted(DEFAULTS))})")
        merged = {**DEFAULTS, **options}
        fs = merged["dm.fs"]
        if fs not in FILESYSTEMS:
            raise UsageError(f'dm.fs "{fs}" is not supported (use {" or ".join(FILESYSTEMS)})')
        sizes = {key: parse_size(merged[key], key) for key in
                 ("dm.basesize", "dm.loopdatasize", "dm.loopmetadatasize", "dm.blocksize")}
        block = sizes["dm.blocksize"]
        # The kernel wants a thin-pool block size between 64 KiB and 1 GiB, a multiple of 64 KiB.
        if block < 64 << 10 or block > 1 << 30 or block % (64 << 10):
            raise UsageError(f'dm.blocksize "{merged["dm.blocksize"]}" must be a multiple of 64K between 64K and 1G')
        if merged["dm.thinpooldev"] and ({"dm.loopdatasize", "dm.loopmetadatasize"} & set(options)):
            raise UsageError("dm.loopdatasize and dm.loopmetadatasize do not apply with dm.thinpooldev")
        return cls(merged["dm.thinpooldev"].removeprefix("/dev/mapper/"), sizes["dm.basesize"], fs,
                   sizes["dm.loopdatasize"], sizes["dm.loopmetadatasize"], block)


# --- tables and command lines (pure) ----------------------------------------------------------
def pool_name(st_dev: int, st_ino: int) -> str:
    """A pool name unique per home, as Docker's ``docker-MAJ:MIN-INODE-pool``."""
    return f"pallet-{os.major(st_dev)}:{os.minor(st_dev)}-{st_ino}-pool"


def thin_pool_table(data_bytes: int, metadata_dev: str, data_dev: str, block_bytes: int) -> str:
    """``0 <sectors> thin-pool <meta> <data> <block sectors> <low water mark> 1 skip_block_zeroing``."""
    sectors = data_bytes // SECTOR
    block_sectors = block_bytes // SECTOR
    # Low water mark: 1% of the data blocks (at least one), like Docker's default.
    low_water = max(1, (data_bytes // block_bytes) // 100)
    return f"0 {sectors} thin-pool {metadata_dev} {data_dev} {block_sectors} {low_water} 1 skip_block_zeroing"


def thin_table(size_bytes: int, pool_dev: str, device_id: int) -> str:
    return f"0 {size_bytes // SECTOR} thin {pool_dev} {device_id}"


def create_thin_commands(pool: str, device_id: int) -> list[list[str]]:
    return [["dmsetup", "message", pool, "0", f"create_thin {device_id}"]]


def create_snap_commands(pool: str, device_id: int, origin_id: int, active_origin: str | None) -> list[list[str]]:
    """A snapshot of an active origin needs the origin suspended so its data is consistent."""
    message = ["dmsetup", "message", pool, "0", f"create_snap {device_id} {origin_id}"]
    if active_origin is None:
        return [message]
    return [["dmsetup", "suspend", active_origin], message, ["dmsetup", "resume", active_origin]]


def delete_commands(pool: str, device_id: int) -> list[list[str]]:
    return [["dmsetup", "message", pool, "0", f"delete {device_id}"]]


def activate_command(name: str, table: str) -> list[str]:
    return ["dmsetup", "create", name, "--table", table]


def deactivate_command(name: str) -> list[str]:
    return ["dmsetup", "remove", "--retry", name]


def mkfs_command(fs: str, device: str) -> list[str]:
    if fs == "xfs":
        return ["mkfs.xfs", "-q", "-f", device]
    # Initialise everything now: lazy init would write behind the snapshots' back.
    return ["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", device]


def grow_command(fs: str, device: str, mountpoint: str) -> list[str]:
    """Grow a mounted filesystem to its (larger) thin device: a container layer with ``size=``."""
    return ["xfs_growfs", mountpoint] if fs == "xfs" else ["resize2fs", device]


def mount_options(fs: str, mount_label: str) -> str:
    options = ["nouuid"] if fs == "xfs" else []  # every snapshot of the base shares its xfs UUID
    if mount_label:
        options.append(f'context="{mount_label}"')
    return ",".join(options)


# --- state on disk ---------------------------------------------------------------------------
@dataclass
class DeviceRecord:
    """One thin device: the layer it holds, its id in the pool, its size."""

    layer_id: str
    device_id: int
    size: int
    parent: str | None = None
    grow: bool = False                  # the filesystem is still the origin's size


class DmSetup:
    """Runs the command lines above; the only place this driver touches the host."""

    def run(self, argv: list[str]) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, timeout=120)
        except FileNotFoundError:
            raise PalletError(f"the {argv[0]} command is not installed") from None
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
            raise PalletError(f"{' '.join(argv[:2])} failed: {lines[-1] if lines else result.returncode}")
        return result.stdout.decode(errors="replace")

    def run_all(self, commands: list[list[str]]) -> None:
        for argv in commands:
            self.run(argv)

    def active(self, name: str) -> bool:
        return os.path.exists(f"/dev/mapper/{name}")


class DeviceMapperDriver(StorageDriver):
    description = "device-mapper thin provisioning"

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if not _kernel_has_device_mapper():
            return Availability.no("device-mapper is not supported by this kernel")
        try:
            fd = os.open("/dev/mapper/control", os.O_RDWR)
            os.close(fd)
        except OSError as exc:
            return Availability.no(f"cannot open /dev/mapper/control: {os.strerror(exc.errno)}")
        if host.which("dmsetup") is None:
            return Availability.no("the dmsetup command is not installed")
        return Availability.ok()

    def __init__(self, context):
        super().__init__(context)
        self.opts = DmOptions.parse(self.options)
        self.dm = DmSetup()
        self.meta_dir = self.home / "metadata"
        self.mnt_dir = self.home / "mnt"
        self._pool: str | None = None

    # --- pool ---------------------------------------------------------------------------
    @property
    def pool(self) -> str:
        """The thin pool, set up on first use (loop files unless ``dm.thinpooldev`` names one)."""
        if self._pool is None:
            self._pool = self.opts.thinpooldev or self._loop_pool()
            self._ensure_base()
        return self._pool

    def _loop_pool(self) -> str:
        loops = self.home / "devicemapper"
        loops.mkdir(parents=True, exist_ok=True)
        st = os.stat(self.home)
        name = pool_name(st.st_dev, st.st_ino)
        if self.dm.active(name):
            return name
        data, metadata = loops / "data", loops / "metadata"
        for path, size in ((data, self.opts.loopdatasize), (metadata, self.opts.loopmetadatasize)):
            if not path.exists():
                with open(path, "wb") as handle:
                    handle.truncate(size)  # sparse: blocks are used only when written
        data_dev = self.dm.run(["losetup", "-f", "--show", str(data)]).strip()
        meta_dev = self.dm.run(["losetup", "-f", "--show", str(metadata)]).strip()
        size = data.stat().st_size
        self.dm.run(activate_command(name, thin_pool_table(size, meta_dev, data_dev, self.opts.blocksize)))
        return name

    def _ensure_base(self) -> None:
        if self._record("base") is not None:
            return
        base = DeviceRecord("base", self._next_device_id(), self.opts.basesize)
        self.dm.run_all(create_thin_commands(self._pool, base.device_id))
        name = self._activate(base)
        try:
            self.dm.run(mkfs_command(self.opts.fs, f"/dev/mapper/{name}"))
        finally:
            self.dm.run(deactivate_command(name))
        self._save(base)

    # --- records ------------------------------------------------------------------------
    def _record(self, layer_id: str) -> DeviceRecord | None:
        try:
            return DeviceRecord(**json.loads((self.meta_dir / f"{layer_id}.json").read_text()))
        except FileNotFoundError:
            return None

    def _save(self, record: DeviceRecord) -> None:
        from pallet.kernel.fsutil import atomic_write_json

        atomic_write_json(self.meta_dir / f"{record.layer_id}.json", asdict(record))

    def _next_device_id(self) -> int:
        used = [json.loads(p.read_text())["device_id"] for p in self.meta_dir.glob("*.json")] if self.meta_dir.exists() else []
        return max(used, default=0) + 1

    def _device_name(self, record: DeviceRecord) -> str:
        return f"{self.pool.removesuffix('-pool')}-{record.layer_id}"

    def _activate(self, record: DeviceRecord) -> str:
        name = self._device_name(record)
        if not self.dm.active(name):
            self.dm.run(activate_command(name, thin_table(record.size, f"/dev/mapper/{self.pool}", record.device_id)))
        return name

    # --- layers -------------------------------------------------------------------------
    def create(self, layer_id, parent=None):
        self.create_rw(layer_id, parent)

    def create_rw(self, layer_id, parent=None, opts=None):
        from pallet.kernel.fsutil import locked
        from pallet.kernel.storage.units import parse_size

        if layer_id == "base":  # the name of the pool's base device
            raise UsageError(f'invalid layer id "{layer_id}"')
        self.check_id(layer_id)
        unknown = sorted(set(opts or {}) - {"size"})
        if unknown:
            raise UsageError(f'unknown storage option "{unknown[0]}" for devicemapper (known: size)')
        with locked(self.home / "lock"):
            if self._record(layer_id) is not None:
                raise Conflict(f"layer {layer_id} already exists")
            origin = self._record(parent or "base")
            if origin is None:
                raise NotFound(f"parent layer {parent} does not exist")
            size = parse_size((opts or {}).get("size") or "0", "size") or origin.size
            if size < origin.size:
                raise UsageError(f"size {size} is smaller than the parent layer's {origin.size}")
            record = DeviceRecord(layer_id, self._next_device_id(), size, parent, grow=size > origin.size)
            active = self._device_name(origin) if self.dm.active(self._device_name(origin)) else None
            self.dm.run_all(create_snap_commands(self.pool, record.device_id, origin.device_id, active))
            self._save(record)

    def remove(self, layer_id):
        record = self._record(layer_id)
        if record is None:
            return
        self._unmount(record)
        self.dm.run_all(delete_commands(self.pool, record.device_id))
        (self.meta_dir / f"{layer_id}.json").unlink()

    def get(self, layer_id, mount_label=""):
        from pallet.kernel.fsutil import locked

        with locked(self.home / "lock"):
            record = self._record(layer_id)
            if record is None:
                raise NotFound(f"layer {layer_id} does not exist")
            target = self.mnt_dir / layer_id
            if not os.path.ismount(target):
                target.mkdir(parents=True, exist_ok=True)
                name = self._activate(record)
                options = mount_options(self.opts.fs, mount_label)
                self.dm.run(["mount", *(["-o", options] if options else []), f"/dev/mapper/{name}", str(target)])
                if record.grow:
                    self.dm.run(grow_command(self.opts.fs, f"/dev/mapper/{name}", str(target)))
                    record.grow = False
                    self._save(record)
            rootfs = target / "rootfs"
            rootfs.mkdir(exist_ok=True)
            self._count(layer_id, +1)
            return rootfs

    def put(self, layer_id):
        from pallet.kernel.fsutil import locked

        with locked(self.home / "lock"):
            record = self._record(layer_id)
            if record is None or self._count(layer_id, -1) > 0:
                return
            self._unmount(record)

    def _unmount(self, record: DeviceRecord) -> None:
        target = self.mnt_dir / record.layer_id
        if os.path.ismount(target):
            self.dm.run(["umount", str(target)])
        name = self._device_name(record)
        if self.dm.active(name):
            self.dm.run(deactivate_command(name))

    def _count(self, layer_id: str, delta: int) -> int:
        path = self.mnt_dir / f"{layer_id}.count"
        try:
            count = int(path.read_text())
        except FileNotFoundError:
            count = 0
        count = max(0, count + delta)
        path.write_text(str(count))
        return count

    def exists(self, layer_id):
        return layer_id != "base" and self._record(layer_id) is not None

    def layers(self):
        if not self.meta_dir.exists():
            return []
        return sorted(p.stem for p in self.meta_dir.glob("*.json") if p.stem != "base")

    def cleanup(self):
        """Deactivate a loop-file pool nothing uses any more and detach its loop devices."""
        if self._pool is None or self.opts.thinpooldev:
            return
        if any((self.mnt_dir / p.stem).is_mount() for p in self.mnt_dir.glob("*.count")):
            return
        self.dm.run(deactivate_command(self._pool))
        self._pool = None
        for name in ("data", "metadata"):
            backing = str(self.home / "devicemapper" / name)
            for line in self.dm.run(["losetup", "-j", backing]).splitlines():
                self.dm.run(["losetup", "-d", line.split(":", 1)[0]])

    def status(self):
        return [("Pool Name", self.pool), ("Base Device Size", str(self.opts.basesize)),
                ("Backing Filesystem", self.opts.fs), ("Data loop file" if not self.opts.thinpooldev else "Thin Pool",
                 self.opts.thinpooldev or str(self.home / "devicemapper" / "data"))]


def _kernel_has_device_mapper() -> bool:
    """The kernel lists 'device-mapper' in /proc/misc or /proc/devices when CONFIG_BLK_DEV_DM is on."""
    for path in ("/proc/misc", "/proc/devices"):
        try:
            with open(path) as handle:
                if "device-mapper" in handle.read():
                    return True
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    return False


@hookimpl
def pallet_register_storage_drivers(register):
    register("devicemapper", DeviceMapperDriver)
