"""A deliberately wrong storage driver: the conformance kit must fail it, with readable messages.

Its children share their parent's directory (no isolation), whiteouts are ignored,
diff_size counts nothing, a duplicate create is an OSError rather than the documented
Conflict, and setuid/setgid bits are lost on extraction.
"""

from __future__ import annotations

import io
import os

from pallet.kernel.storage import archive
from pallet.plugins.storage.vfs import VfsDriver


class BrokenDriver(VfsDriver):
    def create(self, layer_id, parent=None):
        if parent:
            self._dirs.mkdir(parents=True, exist_ok=True)
            (self._dirs / layer_id).symlink_to(self._path(parent))  # shares the parent's tree
        else:
            self._dirs.mkdir(parents=True, exist_ok=True)
            os.mkdir(self._path(layer_id))  # FileExistsError for a duplicate, not pallet.errors.Conflict

    def remove(self, layer_id):
        path = self._path(layer_id)
        if path.is_symlink():
            path.unlink()
        else:
            super().remove(layer_id)

    def apply_diff(self, layer_id, parent, stream):
        if not self.exists(layer_id):
            self.create(layer_id, parent)

        class IgnoreWhiteouts:
            creates_parents = False

            def whiteout(self, directory, name):
                return False

            def opaque(self, directory, unpacked):
                return False

        applied = archive.extract(stream, self.get(layer_id), IgnoreWhiteouts())
        for dirpath, _dirs, files in os.walk(self.get(layer_id)):
            for name in files:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, os.lstat(path).st_mode & 0o1777)  # drops setuid/setgid
        return applied

    def diff_size(self, layer_id, parent):
        return 0
