"""The parent's half of starting a container or an exec: plan, cgroup, clone, id maps, release, wait for exec.

Everything the child needs is resolved here, before the fork, so the child runs no parsing and
no imports (start latency, and no import lock held across the fork).
"""

from __future__ import annotations

import json
import os
import sys

from pallet.kernel import linux
from pallet.plugins.runtime.builtin import init, rootfs


def start_container(container_id: str, spec: dict, bundle: str, stdio, console_socket: str | None,
                    seccomp_cache=None, on_cgroup=None):
    """Start the spec's process in new namespaces; return ``(host pid, cgroup dirs, namespace paths)``.

    ``on_cgroup(dirs)`` is called once the cgroup exists, so that the caller can record it before
    anything else can fail (a ``kill -9`` of the caller then still leaves it findable by ``delete``).
    """
    from pallet.kernel.cgroups import Cgroup

    linux_spec = spec.get("linux") or {}
    process = init.plan_process(spec.get("process") or {}, spec)
    plan = init.InitPlan(process, rootfs.plan_mounts(spec, bundle), stdio=tuple(stdio))
    new_flags, joins = _namespaces(linux_spec.get("namespaces") or [])
    plan.setup_user = bool(new_flags & linux.CLONE_NEWUSER)
    plan.rootfs.in_userns = plan.setup_user
    if new_flags & linux.CLONE_NEWUTS and spec.get("hostname"):
        plan.hostname = spec["hostname"]
    if new_flags & linux.CLONE_NEWUTS and spec.get("domainname"):
        plan.domainname = spec["domainname"]
    plan.loopback_up = bool(new_flags & linux.CLONE_NEWNET)
    plan.sysctl = dict(linux_spec.get("sysctl") or {})
    # The cgroup namespace is unshared after the parent moved the child into its cgroup.
    plan.unshare = new_flags & linux.CLONE_NEWCGROUP
    new_flags &= ~linux.CLONE_NEWCGROUP
    if not new_flags & linux.CLONE_NEWNS:
        raise init.ContainerStartError("the spec must ask for a mount namespace", init.SETUP_FAILED)
    process.seccomp = _seccomp(linux_spec, seccomp_cache)
    _preload(plan)
    cgroup = Cgroup.for_spec(container_id, linux_spec)
    cgroup.create()
    try:
        if on_cgroup is not None:
            on_cgroup(cgroup.dirs())
        cgroup.apply(linux_spec.get("resources") or {})
        plan.rootfs.cgroup_dirs = cgroup.container_dirs()
        pid = _launch(plan, new_flags, joins, cgroup, console_socket,
                      lambda child: _write_id_maps(child, linux_spec) if plan.setup_user else None)
    except BaseException:
        cgroup.destroy()
        raise
    return pid, cgroup.dirs(), {name: f"/proc/{pid}/ns/{ns}" for name, (_f, ns) in linux.NAMESPACES.items()}


def exec_in_container(container_pid: int, spec: dict, process: dict, cgroup_dirs: dict, stdio,
                      console_socket: str | None, seccomp_cache=None) -> int:
    """Start ``process`` in the namespaces of ``container_pid``, in its cgroup, with the same security."""
    from pallet.kernel.cgroups import Cgroup

    merged = dict(spec.get("process") or {})
    merged.update(process)
    plan = init.InitPlan(init.plan_process(merged, spec), stdio=tuple(stdio))
    joins = []
    for name, (flag, ns) in linux.NAMESPACES.items():
        path = f"/proc/{container_pid}/ns/{ns}"
        if os.path.exists(path) and os.stat(path).st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino:
            joins.append((path, flag))
    plan.process.seccomp = _seccomp(spec.get("linux") or {}, seccomp_cache)
    _preload(plan)
    return _launch(plan, 0, joins, Cgroup.from_dirs(cgroup_dirs) if cgroup_dirs else None, console_socket, None)


def _namespaces(entries: list[dict]) -> tuple[int, list[tuple[str, int]]]:
    new_flags, joins = 0, []
    for entry in entries:
        try:
            flag = linux.NAMESPACES[entry["type"]][0]
        except KeyError:
            raise init.ContainerStartError(f"unknown namespace type {entry.get('type')!r}", init.SETUP_FAILED) from None
        if entry.get("path"):
            joins.append((entry["path"], flag))
        else:
            new_flags |= flag
    return new_flags, joins


def _seccomp(linux_spec: dict, cache_dir):
    """The filter is compiled to BPF in the parent (or read from the cache); the child only loads it."""
    if not linux_spec.get("seccomp"):
        return None
    from pallet.plugins.runtime.builtin.seccomp import compile_oci

    return compile_oci(linux_spec["seccomp"], cache_dir)


def _preload(plan: init.InitPlan) -> None:
    """Import in the parent what the child will use, so the child's ``import`` is a dict lookup."""
    if plan.loopback_up:
        import _socket  # noqa: F401
        import struct  # noqa: F401
    if plan.process.terminal:
        import socket  # noqa: F401
        import struct  # noqa: F401
    if plan.process.landlock is not None:
        import pallet.plugins.runtime.builtin.landlock  # noqa: F401


def _launch(plan: init.InitPlan, new_flags: int, joins, cgroup, console_socket, before_release) -> int:
    """Clone the child (with path-joined namespaces entered around the clone), release it, wait for exec."""
    from pallet.kernel.cgroups import stop_warming

    stop_warming()   # a raw clone wants a single-threaded process; its last move was a moment ago
    opened: list[int] = []
    here: list[tuple[int, int]] = []
    try:
        if plan.process.terminal and console_socket:
            import socket

            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(console_socket)
                plan.console_fd = sock.detach()
            opened.append(plan.console_fd)
        # user and mount namespaces can only be entered by a single-threaded process: the child does it.
        for path, flag in joins:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            (plan.join if flag in (linux.CLONE_NEWUSER, linux.CLONE_NEWNS) else here).append((fd, flag))
    except OSError as err:
        for fd in opened:
            os.close(fd)
        raise init.ContainerStartError(f"cannot open {err.filename or console_socket}: {err.strerror}",
                                       init.SETUP_FAILED) from None
    plan.join.sort(key=lambda item: item[1] != linux.CLONE_NEWUSER)
    sync_r, sync_w = _above_stdio(os.pipe2(os.O_CLOEXEC))
    error_r, error_w = _above_stdio(os.pipe2(os.O_CLOEXEC))
    # The child must not hold the parent's ends: each side has to see EOF when the other dies.
    plan.close_fds = [sync_w, error_r]
    try:
        pid = _clone_in(here, new_flags, plan, sync_r, error_w)
    except OSError as err:
        for fd in (sync_w, error_r):
            os.close(fd)
        raise init.ContainerStartError(f"cannot start the container's process: {err}", init.SETUP_FAILED) from None
    finally:
        for fd in (sync_r, error_w, *opened):
            os.close(fd)
    try:
        if before_release is not None:
            before_release(pid)
        os.write(sync_w, b"\0")
        if cgroup is not None:
            cgroup.add(pid)
        os.write(sync_w, b"\0")
    except BrokenPipeError:
        pass  # the child already failed during its setup: its report is on the error pipe
    except BaseException:
        os.close(sync_w)
        os.close(error_r)
        _reap(pid)
        raise
    os.close(sync_w)
    report = _read_all(error_r)
    if report:
        _reap(pid)
        failure = json.loads(report)
        raise init.ContainerStartError(failure["message"], failure["code"])
    return pid


def _above_stdio(fds: tuple[int, int]) -> tuple[int, int]:
    """A caller running with fd 0-2 closed (a daemon) must not get our pipes where the child puts stdio."""
    import fcntl

    moved = []
    for fd in fds:
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        moved.append(fd)
    return moved[0], moved[1]


def _clone_in(here: list[tuple[int, int]], new_flags: int, plan: init.InitPlan, sync_r: int, error_w: int) -> int:
    """Enter ``here`` namespaces in this thread, clone, and come back to ours whatever happens."""
    saved = []
    try:
        for fd, flag in here:
            saved.append((os.open(f"/proc/thread-self/ns/{linux.NS_FILES[flag]}", os.O_RDONLY | os.O_CLOEXEC), flag))
            linux.setns(fd, flag)
        if _other_threads():
            return _clone_from_fork(new_flags, plan, sync_r, error_w)
        pid = linux.clone(new_flags)
        if pid == 0:
            init.child_main(plan, sync_r, error_w)
        return pid
    finally:
        for fd, flag in reversed(saved):
            linux.setns(fd, flag)
            os.close(fd)


def _other_threads() -> bool:
    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


def _clone_from_fork(new_flags: int, plan: init.InitPlan, sync_r: int, error_w: int) -> int:
    """With other threads alive, a raw clone is not safe (their locks are copied held): ``os.fork``
    first, which handles Python's and glibc's locks, and clone from that single-threaded child,
    which exits at once. The container is then re-parented to us, a child subreaper (pallet's
    monitor and CLI already are; we become one otherwise) and we reap it as usual."""
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:
        try:
            for fd in [pid_r, *plan.close_fds]:
                os.close(fd)
            plan.close_fds = [pid_w]
            pid = linux.clone(new_flags)
            if pid == 0:
                init.child_main(plan, sync_r, error_w)
            os.write(pid_w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(pid_w)
    reported = _read_all(pid_r)
    os.waitpid(middle, 0)
    if not reported:
        raise init.ContainerStartError("could not clone the container's process", init.SETUP_FAILED)
    return int(reported)


def _write_id_maps(pid: int, linux_spec: dict) -> None:
    for kind, key in (("uid", "uidMappings"), ("gid", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux_spec.get(key) or [])
        if lines:
            with open(f"/proc/{pid}/{kind}_map", "w") as handle:
                handle.write(lines)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
