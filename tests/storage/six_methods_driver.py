"""A storage driver with only the six required methods, as docs/plugins.md says suffices: the kit must pass it.

Layers are directories copied from their parent; ``layers`` and the diff operations come from
``StorageDriver``'s fallbacks.
"""

from __future__ import annotations

import shutil
import subprocess

from pallet.drivers import StorageDriver
from pallet.errors import Conflict, NotFound


class SixMethodsDriver(StorageDriver):
    def _dir(self, layer_id):
        return self.home / self.check_id(layer_id)

    def create(self, layer_id, parent=None):
        target = self._dir(layer_id)
        if target.exists():
            raise Conflict(f"layer {layer_id} already exists")
        if parent and not self._dir(parent).is_dir():
            raise NotFound(f"parent layer {parent} does not exist")
        self.home.mkdir(parents=True, exist_ok=True)
        if parent:
            subprocess.run(["cp", "-a", "--", str(self._dir(parent)), str(target)], check=True)
        else:
            target.mkdir()

    def create_rw(self, layer_id, parent=None, opts=None):
        self.refuse_options(opts)
        self.create(layer_id, parent)

    def remove(self, layer_id):
        shutil.rmtree(self._dir(layer_id), ignore_errors=True)

    def get(self, layer_id, mount_label=""):
        if not self._dir(layer_id).is_dir():
            raise NotFound(f"layer {layer_id} does not exist")
        return self._dir(layer_id)

    def put(self, layer_id):
        pass

    def exists(self, layer_id):
        return self._dir(layer_id).is_dir()
