"""Volume driver contract: named volumes a container mounts (Docker's VolumeDriver API)."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.drivers.base import Driver


class VolumeDriver(Driver):
    """Create volumes and give the core a host path to bind-mount.

    ``home`` (in the driver's context) is ``<root>/volumes``, shared by every volume driver; the core (``pallet.kernel.volumes.VolumeStore``) keeps each
    volume's record in ``<home>/<name>/volume.json`` and counts the containers using it, so a
    driver sees ``mount`` when the first container mounts a volume and ``unmount`` when the
    last one leaves.
    """

    kind = "volume"

    def create(self, name: str, options: dict[str, str]) -> None:
        """Create volume ``name`` with the ``-o`` options; reject options it does not know (UsageError)."""
        raise NotImplementedError

    def remove(self, name: str) -> None:
        """Delete the volume's data. The core has checked that no container uses it."""
        raise NotImplementedError

    def mount(self, name: str, container_id: str) -> Path:
        """Make the volume available and return its host path."""
        raise NotImplementedError

    def unmount(self, name: str, container_id: str) -> None:
        """Undo ``mount``; the volume's data stays."""
        raise NotImplementedError

    def path(self, name: str) -> Path:
        """The host path of the volume's data (``volume inspect``'s Mountpoint), mounted or not."""
        raise NotImplementedError

    def list(self) -> list[str]:
        """Names of the volumes the driver holds."""
        raise NotImplementedError

    def rename(self, old: str, new: str) -> bool:
        """Move unused, unmounted volume ``old``'s data to ``new`` in place (``volume rename``).

        Return False when the driver cannot: the core then creates ``new`` with the same options,
        copies the data (as ``volume clone``) and removes ``old``.
        """
        return False
