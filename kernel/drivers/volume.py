"""Volume driver contract: named volumes a container mounts (Docker's VolumeDriver API)."""

from __future__ import annotations

from pathlib import Path

from kernel.drivers.base import Driver


class VolumeDriver(Driver):
    """Create volumes and give the core a host path to bind-mount."""

    kind = "volume"

    def __init__(self, home: Path, options: dict[str, str] | None = None):
        self.home = Path(home)
        self.options = dict(options or {})

    def create(self, name: str, options: dict[str, str]) -> None:
        raise NotImplementedError

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def mount(self, name: str, container_id: str) -> Path:
        """Make the volume available and return its host path."""
        raise NotImplementedError

    def unmount(self, name: str, container_id: str) -> None:
        raise NotImplementedError

    def path(self, name: str) -> Path:
        raise NotImplementedError

    def list(self) -> list[str]:
        raise NotImplementedError
