"""btrfs storage driver: each layer a subvolume, each child a snapshot of its parent (O(1) in layer size).

Layers live at ``<home>/subvolumes/<id>``; ``get`` returns that directory (a subvolume needs no
mount). Subvolume operations go through the ``btrfsutil`` binding; quota groups (``size=``)
through the ``btrfs`` command, because the binding has no qgroup limit call. Diffs use the
core's naive fallback: btrfs send streams are not tar layers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError


class BtrfsDriver(StorageDriver):
    description = "btrfs subvolumes and snapshots"

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if "btrfs" not in host.filesystems():
            return Availability.no("btrfs is not supported by this kernel")
        if home is not None:
            fstype, mountpoint = host.filesystem_of(home)
            if fstype != "btrfs":
                return Availability.no(f"{home} is not on btrfs ({mountpoint} is {fstype})")
        try:
            import btrfsutil  # noqa: F401
        except ImportError:
            return Availability.no("the btrfsutil Python binding is not installed (pip install btrfsutil==6.12)")
        return Availability.ok()

    def __init__(self, context):
        super().__init__(context)
        for key in self.options:
            if key not in ("size",):
                raise UsageError(f'unknown option "{key}" for storage driver "btrfs" (known: size)')
        self.default_size = self.options.get("size")
        self.subvolumes = self.home / "subvolumes"

    # --- layers ---------------------------------------------------------------------------
    def _path(self, layer_id: str) -> Path:
        return self.subvolumes / self.check_id(layer_id)

    def create(self, layer_id, parent=None):
        self._create(layer_id, parent)

    def create_rw(self, layer_id, parent=None, opts=None):
        opts = dict(opts or {})
        unknown = set(opts) - {"size"}
        if unknown:
            raise UsageError(f'unknown storage option "{sorted(unknown)[0]}" for btrfs (known: size)')
        size = opts.get("size") or self.default_size
        if size:
            from pallet.kernel.storage.units import parse_size

            limit = parse_size(size, "size")
            self._require_quotas()  # before creating anything, so a refusal leaves no layer behind
        self._create(layer_id, parent)
        if size:
            try:
                _btrfs("qgroup", "limit", str(limit), str(self._path(layer_id)))
            except PalletError:
                self.remove(layer_id)
                raise

    def _create(self, layer_id: str, parent: str | None) -> None:
        import btrfsutil

        path = self._path(layer_id)
        if os.path.lexists(path):
            raise Conflict(f"layer {layer_id} already exists")
        self.subvolumes.mkdir(parents=True, exist_ok=True)
        try:
            if parent:
                source = self._path(parent)
                if not os.path.isdir(source):
                    raise NotFound(f"parent layer {parent} does not exist")
                btrfsutil.create_snapshot(str(source), str(path))
            else:
                btrfsutil.create_subvolume(str(path))
        except btrfsutil.BtrfsUtilError as exc:
            raise PalletError(f"btrfs: cannot create layer {layer_id}: {exc}") from None

    def remove(self, layer_id):
        import btrfsutil

        path = self._path(layer_id)
        if not os.path.lexists(path):
            return
        try:
            # Containers may have created subvolumes of their own inside the layer.
            btrfsutil.delete_subvolume(str(path), recursive=True)
        except btrfsutil.BtrfsUtilError as exc:
            if exc.errno == 2:
                return
            raise PalletError(f"btrfs: cannot remove layer {layer_id}: {exc}") from None
        # The layer's qgroup (size=) cannot be destroyed yet: deletion finishes in the
        # background, and the kernel drops the stale qgroup itself when the cleaner is done.

    def get(self, layer_id, mount_label=""):
        path = self._path(layer_id)
        if not os.path.isdir(path):
            raise NotFound(f"layer {layer_id} does not exist")
        return path

    def put(self, layer_id):
        """Nothing to release: ``get`` mounted nothing."""

    def exists(self, layer_id):
        import btrfsutil

        path = self._path(layer_id)
        try:
            return btrfsutil.is_subvolume(str(path))
        except btrfsutil.BtrfsUtilError:
            return False

    def layers(self):
        try:
            return sorted(name for name in os.listdir(self.subvolumes) if self.exists(name))
        except FileNotFoundError:
            return []

    def metadata(self, layer_id):
        import btrfsutil

        path = self.get(layer_id)
        info = btrfsutil.subvolume_info(str(path))
        meta = {"Path": str(path), "SubvolumeId": str(info.id)}
        if info.parent_uuid and any(info.parent_uuid):
            meta["SnapshotOf"] = info.parent_uuid.hex()
        return meta

    # --- quotas ---------------------------------------------------------------------------
    def quotas_enabled(self) -> bool:
        self.home.mkdir(parents=True, exist_ok=True)
        result = _btrfs("qgroup", "show", str(self.home), check=False)
        return result.returncode == 0

    def _require_quotas(self) -> None:
        if not self.quotas_enabled():
            from pallet.kernel import host

            _fstype, mountpoint = host.filesystem_of(self.home)
            raise PalletError(
                f"size= needs btrfs quotas, which are not enabled on {mountpoint}; "
                f'enable them with "btrfs quota enable {mountpoint}"'
            )

    # --- reporting ------------------------------------------------------------------------
    def status(self):
        from importlib import metadata

        from pallet.kernel import host

        fstype, mountpoint = host.filesystem_of(self.home)
        try:
            library = metadata.version("btrfsutil")
        except metadata.PackageNotFoundError:
            library = "unknown"
        build = _btrfs("--version", check=False)
        return [
            ("Backing Filesystem", fstype),
            ("Mountpoint", mountpoint),
            ("Home", str(self.home)),
            ("Build Version", build.stdout.strip() if build.returncode == 0 else "btrfs command not found"),
            ("Library Version", f"btrfsutil {library}"),
            ("Quotas", "enabled" if self.quotas_enabled() else "disabled"),
            ("Layers", str(len(self.layers()))),
        ]


def _btrfs(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``btrfs`` command for the operations ``btrfsutil`` lacks (qgroups, version)."""
    try:
        result = subprocess.run(["btrfs", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        if check:
            raise PalletError("the btrfs command (btrfs-progs) is needed for quotas but is not installed") from None
        return subprocess.CompletedProcess(["btrfs", *args], 127, "", "btrfs: command not found")
    if check and result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise PalletError(f"btrfs {' '.join(args[:2])} failed: {message[-1] if message else result.returncode}")
    return result


@hookimpl
def pallet_register_storage_drivers(register):
    register("btrfs", BtrfsDriver)
