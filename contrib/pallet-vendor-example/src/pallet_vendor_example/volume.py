"""imagevol: a volume driver whose volumes are ext4 filesystems in sparse image files, with a hard size.

``pallet volume create -d imagevol -o size=64M NAME`` makes ``<volumes>/NAME/disk.img``
(sparse) with an ext4 filesystem; the first container that mounts the volume gets it
loop-mounted at ``<volumes>/NAME/_data``, the last one to leave unmounts it. A template
for volume drivers: only the methods of ``pallet.kernel.drivers.VolumeDriver``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pallet import hookimpl
from pallet.drivers import Availability, VolumeDriver
from pallet.errors import PalletError, UsageError

PALLET_PLUGIN_API = ">=1.0,<2"  # the plugin contract this module was written against

DEFAULT_SIZE = "1G"


class ImageVolumeDriver(VolumeDriver):
    description = "ext4 image files, loop-mounted, with a fixed size (vendor example)"

    @classmethod
    def probe(cls, home=None, options=None):
        for tool in ("mkfs.ext4", "mount", "umount"):
            if shutil.which(tool) is None:
                return Availability.no(f"{tool} is not installed")
        if not os.path.exists("/dev/loop-control"):
            return Availability.no("this kernel has no loop devices (/dev/loop-control)")
        return Availability.ok()

    def _image(self, name):
        return self.home / name / "disk.img"

    def path(self, name):
        return self.home / name / "_data"

    def create(self, name, options):
        from pallet.kernel.storage.units import parse_size

        unknown = sorted(set(options) - {"size"})
        if unknown:
            raise UsageError(f'imagevol: unknown option "{unknown[0]}" (known: size)')
        size = parse_size(options.get("size", DEFAULT_SIZE), "size")
        if size < 8 << 20:
            raise UsageError("imagevol: size must be at least 8M")
        self.path(name).mkdir(parents=True, exist_ok=True)
        image = self._image(name)
        with open(image, "wb") as handle:
            handle.truncate(size)
        _run("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", str(image))

    def mount(self, name, container_id):
        target = self.path(name)
        if not os.path.ismount(target):
            _run("mount", "-o", "loop", str(self._image(name)), str(target))
        return target

    def unmount(self, name, container_id):
        target = self.path(name)
        if os.path.ismount(target):
            _run("umount", str(target))  # a loop device set up by mount -o loop is freed with it

    def remove(self, name):
        self.unmount(name, "")
        self._image(name).unlink(missing_ok=True)
        if self.path(name).exists():
            os.rmdir(self.path(name))

    def list(self):
        return sorted(p.parent.name for p in self.home.glob("*/disk.img"))


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PalletError(f"imagevol: {argv[0]} failed: {result.stderr.strip() or result.returncode}")


@hookimpl
def pallet_register_volume_drivers(register):
    register("imagevol", ImageVolumeDriver)
