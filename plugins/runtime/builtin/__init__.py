"""pallet's built-in runtime: namespaces, pivot_root, cgroups, capabilities and seccomp from Python.

``run`` clones the container's process straight into its new namespaces (it is PID 1 of its
PID namespace and the caller's child, so the caller reaps it), moves it into its cgroup, writes
its uid/gid maps, then lets it go and waits only until it has exec'd: an exec failure comes back
on a close-on-exec pipe and is raised as :class:`pallet.plugins.runtime.builtin.init.ContainerStartError` (a
``PalletError``) whose ``exit_code`` is Docker's: 127 not found, 126 not executable, 125 other.
With other threads alive it forks first and the container is re-parented to the caller, made a
child subreaper (see ``docs/runtime.md``).

Terminal: when ``process.terminal`` is true and ``console_socket`` is a unix socket path, the
container opens a pty in its own devpts and sends the master over that socket with SCM_RIGHTS,
as runc does; :func:`receive_console` is the receiving side.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Runtime
from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.fsutil import atomic_write


@dataclass
class RuntimeState:
    """``<state_dir>/<id>/state.json``: enough to find, signal and clean up the container later."""

    id: str
    pid: int
    start_time: int  # /proc/<pid>/stat field 22: tells our process from a later one with the same pid
    bundle: str
    cgroup: dict[str, str] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)


class PalletRuntime(Runtime):
    description = "built-in Python runtime"

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/mnt"):
            return Availability.no("mount namespaces are not supported by this kernel")
        return Availability.ok()

    # --- state ---------------------------------------------------------------------------------

    @property
    def _seccomp_cache(self) -> Path:
        """Compiled seccomp programs by content (a dot name: never a container id)."""
        return self.state_dir / ".seccomp"

    def _state_path(self, container_id: str) -> Path:
        return self.state_dir / container_id / "state.json"

    def state(self, container_id: str) -> RuntimeState:
        try:
            data = json.loads(self._state_path(container_id).read_text())
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist in the runtime") from None
        return RuntimeState(**data)

    def _save(self, state: RuntimeState) -> None:
        # Atomic (temp + rename) but not fsync'd: this state describes live processes and means
        # nothing after a reboot, like runc's state under /run; an fsync here costs ~10 ms of start.
        path = self._state_path(state.id)
        atomic_write(path, json.dumps(asdict(state)).encode(), durable=False)

    def alive(self, container_id: str) -> bool:
        """True while the container's first process is the one we started (not a reused pid)."""
        try:
            state = self.state(container_id)
        except NotFound:
            return False
        stat = _proc_stat(state.pid) if state.pid else None
        return stat is not None and stat[0] not in (b"Z", b"X") and int(stat[19]) == state.start_time

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self, container_id, bundle, stdio, console_socket=None):
        from pallet.plugins.runtime.builtin import launch

        bundle = Path(bundle).resolve()
        try:
            spec = json.loads((bundle / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise PalletError(f"cannot read {bundle / 'config.json'}: {err}") from None
        if self._state_path(container_id).exists():
            raise PalletError(f"container {container_id} already exists in the runtime")
        # Recorded with pid 0 as soon as the cgroup exists: delete() can clean up after a crash here.
        record = lambda dirs: self._save(RuntimeState(container_id, 0, 0, str(bundle), dirs))  # noqa: E731
        try:
            pid, cgroup_dirs, namespaces = launch.start_container(container_id, spec, str(bundle), stdio,
                                                                  console_socket, self._seccomp_cache, record)
        except BaseException:
            import shutil

            shutil.rmtree(self.state_dir / container_id, ignore_errors=True)
            raise
        self._save(RuntimeState(container_id, pid, process_start_time(pid), str(bundle), cgroup_dirs, namespaces))
        return pid

    def exec(self, container_id, process, stdio, console_socket=None):
        from pallet.plugins.runtime.builtin import launch

        state = self.state(container_id)
        if not self.alive(container_id):
            raise PalletError(f"container {container_id} is not running")
        spec = json.loads((Path(state.bundle) / "config.json").read_text())
        return launch.exec_in_container(state.pid, spec, process, state.cgroup, stdio, console_socket,
                                        self._seccomp_cache)

    def kill(self, container_id, signal, all_processes=False):
        state = self.state(container_id)
        if all_processes and state.cgroup:
            from pallet.kernel.cgroups import Cgroup

            Cgroup.from_dirs(state.cgroup).kill(signal)
            return
        if not self.alive(container_id):
            raise PalletError(f"container {container_id} is not running")
        os.kill(state.pid, signal)

    def pause(self, container_id):
        self.cgroup(container_id).freeze()

    def resume(self, container_id):
        self.cgroup(container_id).thaw()

    def delete(self, container_id, force=False):
        try:
            state = self.state(container_id)
        except NotFound:
            return
        if self.alive(container_id) and not force:
            raise PalletError(f"container {container_id} is running: stop it or use force")
        if state.cgroup:
            from pallet.kernel.cgroups import Cgroup

            Cgroup.from_dirs(state.cgroup).destroy()
        elif force and self.alive(container_id):
            os.kill(state.pid, 9)  # no cgroup: only the first process can be found
        import shutil

        shutil.rmtree(self.state_dir / container_id, ignore_errors=True)

    def cgroup(self, container_id):
        """The container's :class:`pallet.kernel.cgroups.Cgroup` (stats, oom_killed, freeze) while it is known."""
        from pallet.kernel.cgroups import Cgroup

        state = self.state(container_id)
        if not state.cgroup:
            raise PalletError(f"container {container_id} has no cgroup")
        return Cgroup.from_dirs(state.cgroup)


def _proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat from the state field on (index 0 = state, 19 = start time)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def process_start_time(pid: int) -> int:
    """Start time in clock ticks since boot (also of a zombie: its pid cannot be reused yet); 0 when gone."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else 0


def receive_console(sock) -> int:
    """Accept the pty master a container sends on the console socket (the listening side's helper)."""
    import socket

    conn, _ = sock.accept()
    with conn:
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    if not fds:
        raise PalletError("the container did not send a terminal")
    return fds[0]


@hookimpl
def pallet_register_runtimes(register):
    register("pallet", PalletRuntime)
