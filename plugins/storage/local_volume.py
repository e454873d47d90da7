"""local volume driver: volumes as directories under the root, or tmpfs/bind mounts like Docker's local driver.

A volume ``NAME`` keeps its data at ``<root>/volumes/NAME/_data`` (Docker's layout). With
options ``type``, ``o`` and ``device`` (``mount -t TYPE -o O DEVICE``) that directory is a
mount point instead: ``type=tmpfs`` for memory-backed volumes, ``type=none,o=bind,device=/x``
for a host directory. The mount is made when the first container mounts the volume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, VolumeDriver
from pallet.kernel.errors import PalletError, UsageError

OPTIONS = ("type", "o", "device")


class LocalVolumeDriver(VolumeDriver):
    description = "directories under the pallet root; type=tmpfs|none,o=bind,device=…"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    def path(self, name):
        return self.home / name / "_data"

    def _options(self, name: str) -> dict[str, str]:
        try:
            return json.loads((self.home / name / "opts.json").read_text())
        except FileNotFoundError:
            return {}

    def create(self, name, options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise UsageError(f'invalid option key: "{unknown[0]}" (the local driver knows {", ".join(OPTIONS)})')
        kind, device, mount_opts = options.get("type"), options.get("device"), options.get("o", "")
        if (device or mount_opts) and not kind:
            raise UsageError('the local driver needs "type" with "device" or "o" (e.g. type=none,o=bind,device=/x)')
        if kind and kind != "tmpfs" and not device:
            raise UsageError(f'the local driver needs "device" for type={kind}')
        if "bind" in mount_opts.split(",") and not os.path.isabs(device or ""):
            raise UsageError(f'a bind volume needs an absolute "device" path, not "{device}"')
        self.path(name).mkdir(parents=True, exist_ok=True)
        if options:
            from pallet.kernel.fsutil import atomic_write_json

            atomic_write_json(self.home / name / "opts.json", options)

    def mount(self, name, container_id):
        target = self.path(name)
        options = self._options(name)
        if options.get("type") and not _mounted(target):
            kind = options["type"]
            device = options.get("device") or kind
            if "bind" in options.get("o", "").split(",") and not os.path.isdir(device):
                raise PalletError(f'volume {name}: bind source "{device}" does not exist or is not a directory')
            argv = ["mount", "-t", kind, *(["-o", options["o"]] if options.get("o") else []), device, str(target)]
            _run(argv, name)
        return target

    def unmount(self, name, container_id):
        target = self.path(name)
        if _mounted(target):
            _run(["umount", str(target)], name)

    def remove(self, name):
        target = self.path(name)
        self.unmount(name, "")
        if _mounted(target):
            raise PalletError(f"volume {name}: {target} is still mounted")
        # A bind volume's data is the user's directory: only the (unmounted) mount point goes.
        if target.exists():
            shutil.rmtree(target)
        (self.home / name / "opts.json").unlink(missing_ok=True)

    def rename(self, old, new):
        """Move ``_data`` and the options; the core's record next to them is the core's to move."""
        (self.home / new).mkdir(parents=True, exist_ok=True)
        os.rename(self.path(old), self.path(new))
        if (self.home / old / "opts.json").exists():
            os.rename(self.home / old / "opts.json", self.home / new / "opts.json")
        return True

    def list(self):
        """Volumes with a ``_data`` directory, except those the core's record gives to another driver."""
        return sorted(p.parent.name for p in self.home.glob("*/_data") if _record_driver(p.parent) in (None, "local"))


def _record_driver(volume_dir) -> str | None:
    """The driver the core's ``volume.json`` names for this volume, or None before it is written."""
    try:
        return json.loads((volume_dir / "volume.json").read_text()).get("driver")
    except (FileNotFoundError, ValueError):
        return None


def _mounted(path) -> bool:
    """Whether ``path`` is a mount point. ``os.path.ismount`` misses bind mounts from the same filesystem."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            if line.split()[4].replace("\\040", " ") == target:
                return True
    return False


def _run(argv: list[str], name: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise PalletError(f"volume {name}: {' '.join(argv[:1])} failed: {result.stderr.strip() or result.returncode}")


@hookimpl
def pallet_register_volume_drivers(register):
    register("local", LocalVolumeDriver)
