"""vfs storage driver: every layer a full copy of its parent. Slow, and works on any filesystem.

Layers live in ``<home>/dir/<id>``. A child is made with ``cp -a --reflink=auto`` rather than
a Python tree walk: coreutils already preserves ownership, modes, timestamps, xattrs, hard
links, symlinks, device nodes and sparse files, copies in C (several times faster than
``shutil.copytree`` on many small files), and shares extents on btrfs/xfs for free.
The copy goes to a temporary name that is renamed into place, so a crash never leaves a
half-copied layer under a real id. Diff operations are the naive fallback of the base class.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, StorageDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError
from pallet.kernel.storage.layerids import check_layer_id, leftover_name, refuse_options, sweep_leftovers


class VfsDriver(StorageDriver):
    description = "full copies of every layer; works everywhere"

    @classmethod
    def probe(cls, home=None, options=None):
        if shutil.which("cp") is None:
            return Availability.no("the cp command (coreutils) is missing")
        return Availability.ok()

    @property
    def _dirs(self) -> Path:
        return self.home / "dir"

    def _path(self, layer_id: str) -> Path:
        return self._dirs / check_layer_id(layer_id)

    def create(self, layer_id: str, parent: str | None = None) -> None:
        final = self._path(layer_id)
        if final.exists():
            raise Conflict(f'layer "{layer_id}" already exists')
        source = self._path(parent) if parent else None
        if source is not None and not source.is_dir():
            raise NotFound(f'parent layer "{parent}" does not exist')
        self._dirs.mkdir(parents=True, exist_ok=True)
        tmp = self._dirs / leftover_name("tmp", layer_id)
        try:
            if source is not None:
                proc = subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(tmp)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise PalletError(f'vfs: copying layer "{parent}" failed: {proc.stderr.strip()}')
            else:
                tmp.mkdir(0o755)
            try:
                os.rename(tmp, final)
            except OSError:
                raise Conflict(f'layer "{layer_id}" already exists') from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def create_rw(self, layer_id: str, parent: str | None = None, opts: dict[str, str] | None = None) -> None:
        refuse_options("vfs", opts)
        self.create(layer_id, parent)

    def remove(self, layer_id: str) -> None:
        path = self._path(layer_id)
        doomed = self._dirs / leftover_name("rm", layer_id)
        try:
            os.rename(path, doomed)  # disappears at once, even if the delete below is interrupted
        except FileNotFoundError:
            return
        shutil.rmtree(doomed)

    def get(self, layer_id: str, mount_label: str = "") -> Path:
        path = self._path(layer_id)
        if not path.is_dir():
            raise NotFound(f'layer "{layer_id}" does not exist')
        return path

    def put(self, layer_id: str) -> None:
        check_layer_id(layer_id)

    def exists(self, layer_id: str) -> bool:
        return self._path(layer_id).is_dir()

    def layers(self) -> list[str]:
        """The layers, after sweeping what a killed create/remove left behind."""
        sweep_leftovers(self._dirs)
        try:
            return sorted(name for name in os.listdir(self._dirs) if not name.startswith("."))
        except FileNotFoundError:
            return []

    def status(self) -> list[tuple[str, str]]:
        from pallet.kernel import host

        return [("Home", str(self.home)), ("Backing Filesystem", host.filesystem_of(self.home)[0])]

    def metadata(self, layer_id: str) -> dict[str, str]:
        return {"Dir": str(self._path(layer_id))}


@hookimpl
def pallet_register_storage_drivers(register):
    register("vfs", VfsDriver)
