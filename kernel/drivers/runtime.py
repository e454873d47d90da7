"""OCI runtime contract: execute a bundle (``config.json`` + rootfs), as runc and crun do."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.drivers.base import Driver


class Runtime(Driver):
    """Start, signal and delete containers from OCI bundles.

    The caller (pallet's per-container monitor, or the CLI for a foreground ``run``) is the
    parent or child subreaper of the container process and reaps it; the runtime only
    starts it and keeps its own state under ``state_dir``: its context's ``home``,
    ``<run_root>/runtime/<name>`` (cleared by a reboot, as runc's ``/run/runc``).
    """

    kind = "runtime"

    @property
    def state_dir(self) -> Path:
        return self.home

    def run(self, container_id: str, bundle: Path, stdio: tuple[int, int, int], console_socket: str | None = None) -> int:
        """Create and start the container described by ``bundle/config.json``; return the host pid of its process.

        ``stdio`` are the file descriptors for the process's stdin, stdout and stderr
        (ignored when the spec asks for a terminal and ``console_socket`` is given).
        """
        raise NotImplementedError

    def exec(self, container_id: str, process: dict, stdio: tuple[int, int, int], console_socket: str | None = None) -> int:
        """Start ``process`` (an OCI ``process`` object) inside the running container; return its host pid."""
        raise NotImplementedError

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        raise NotImplementedError

    def pause(self, container_id: str) -> None:
        raise NotImplementedError

    def resume(self, container_id: str) -> None:
        raise NotImplementedError

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the runtime's state and the container's cgroup; not an error if already gone."""
        raise NotImplementedError
