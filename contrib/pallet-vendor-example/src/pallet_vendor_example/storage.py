"""copyfs: the smallest correct storage driver — a layer is a directory holding a full copy of its parent.

It implements only the six required operations; diff, changes, apply_diff and diff_size
come from pallet's naive fallback in ``StorageDriver``. Use it as a template.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from pallet import hookimpl
from pallet.drivers import Availability, StorageDriver
from pallet.errors import Conflict, NotFound

PALLET_PLUGIN_API = ">=1.0,<2"  # the plugin contract this module was written against


class CopyFsDriver(StorageDriver):
    description = "directories copied from their parent (vendor example)"

    @classmethod
    def probe(cls, home=None, options=None):
        if shutil.which("cp") is None:
            return Availability.no("cp is not installed")
        return Availability.ok()

    def _dir(self, layer_id: str) -> Path:
        return self.home / "layers" / self.check_id(layer_id)  # a UsageError for ids that are no safe file names

    def create(self, layer_id, parent=None):
        target = self._dir(layer_id)
        if target.exists():
            raise Conflict(f"copyfs: layer {layer_id} already exists")
        if parent and not self._dir(parent).is_dir():
            raise NotFound(f"copyfs: parent layer {parent} does not exist")
        staging = self.home / "staging" / f"{layer_id}.{uuid.uuid4().hex[:8]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if parent:
            # cp -a keeps owners, modes, links, devices and xattrs; a crash leaves only staging/.
            subprocess.run(["cp", "-a", "--", str(self._dir(parent)), str(staging)], check=True)
        else:
            staging.mkdir(mode=0o755)
        staging.rename(target)

    def create_rw(self, layer_id, parent=None, opts=None):
        self.refuse_options(opts)  # a UsageError: copyfs has no per-container options
        self.create(layer_id, parent)

    def remove(self, layer_id):
        shutil.rmtree(self._dir(layer_id), ignore_errors=True)

    def get(self, layer_id, mount_label=""):
        path = self._dir(layer_id)
        if not path.is_dir():
            raise NotFound(f"copyfs: no such layer {layer_id}")
        return path

    def put(self, layer_id):
        pass

    def exists(self, layer_id):
        return self._dir(layer_id).is_dir()

    def layers(self):
        root = self.home / "layers"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def status(self):
        return [("Home", str(self.home)), ("Vendor", "pallet-vendor-example")]


@hookimpl
def pallet_register_storage_drivers(register):
    register("copyfs", CopyFsDriver)


@hookimpl
def pallet_register_commands(cli):
    from pallet_vendor_example.commands import copyfs

    cli.add_command(copyfs)  # pallet copyfs stats
