"""The container's first process: a plan resolved in the parent, carried out in the child up to ``execve``.

The parent parses the spec into plain data before forking (``plan_process``), so the child path
imports nothing and parses nothing. The child (``child_main``) never returns: it execs the
command, or reports why it could not on a close-on-exec pipe and exits with Docker's code
(127 command not found, 126 not executable, 125 any other setup failure).
"""

from __future__ import annotations

import _signal
import errno
import fcntl
import json
import os
import resource
import stat
from dataclasses import dataclass, field

from pallet.kernel import linux
from pallet.kernel.errors import PalletError
from pallet.kernel.landlock import ANNOTATION as LANDLOCK_ANNOTATION
from pallet.plugins.runtime.builtin import caps, rootfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414


class ContainerStartError(PalletError):
    """The container's process could not be started; ``exit_code`` is Docker's (125, 126 or 127)."""

    def __init__(self, message: str, code: int):
        super().__init__(message, exit_code=code)


@dataclass
class ProcessPlan:
    args: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    umask: int | None = None
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (rows, columns)
    capabilities: dict[str, int] | None = None
    drop_bounding: list[int] = field(default_factory=list)
    no_new_privileges: bool = False
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)
    oom_score_adj: int | None = None
    apparmor_profile: str = ""
    selinux_label: str = ""
    seccomp: object = None  # seccomp.Filter, built before the fork
    landlock: dict | None = None


@dataclass
class InitPlan:
    process: ProcessPlan
    rootfs: rootfs.RootfsPlan | None = None
    stdio: tuple[int, int, int] | None = None
    console_fd: int | None = None
    join: list[tuple[int, int]] = field(default_factory=list)  # (fd, CLONE_NEW*) for setns in the child
    unshare: int = 0  # namespaces unshared after the parent moved the child into its cgroup (cgroup ns)
    setup_user: bool = False  # a new user namespace: become its root once the parent wrote the maps
    hostname: str | None = None
    domainname: str | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    loopback_up: bool = False
    close_fds: list[int] = field(default_factory=list)  # the parent's ends of our pipes


def plan_process(process: dict, spec: dict | None = None) -> ProcessPlan:
    """OCI ``process`` (+ the spec's annotations) -> a ProcessPlan; rlimits clamped to our hard limits."""
    user = process.get("user") or {}
    plan = ProcessPlan(
        args=list(process.get("args") or []),
        env=list(process.get("env") or []),
        cwd=process.get("cwd") or "/",
        uid=int(user.get("uid", 0)),
        gid=int(user.get("gid", 0)),
        groups=[int(g) for g in user.get("additionalGids") or []],
        umask=user.get("umask"),
        terminal=bool(process.get("terminal")),
        console_size=_console_size(process.get("consoleSize")),
        capabilities=caps.masks(process.get("capabilities")),
        no_new_privileges=bool(process.get("noNewPrivileges")),
        oom_score_adj=process.get("oomScoreAdj"),
        apparmor_profile=process.get("apparmorProfile") or "",
        selinux_label=process.get("selinuxLabel") or "",
    )
    if not plan.args:
        raise ContainerStartError("process.args is empty", SETUP_FAILED)
    if plan.capabilities is not None:
        plan.drop_bounding = caps.to_drop(plan.capabilities["bounding"])
    for limit in process.get("rlimits") or []:
        number = getattr(resource, limit["type"], None)
        if number is None:
            raise ContainerStartError(f"unknown rlimit {limit['type']}", SETUP_FAILED)
        # Without CAP_SYS_RESOURCE a hard limit cannot be raised: clamp to what we have.
        _soft, our_hard = resource.getrlimit(number)
        hard = _clamp(int(limit["hard"]), our_hard)
        plan.rlimits.append((number, _clamp(int(limit["soft"]), hard), hard))
    if plan.apparmor_profile and not os.path.isdir("/sys/kernel/security/apparmor"):
        raise ContainerStartError(f"AppArmor profile {plan.apparmor_profile!r} was requested but AppArmor is not enabled "
                        "in this kernel", SETUP_FAILED)
    if plan.selinux_label and not os.path.exists("/sys/fs/selinux/enforce"):
        plan.selinux_label = ""  # as runc and Docker: a label means nothing on a host without SELinux
    annotations = (spec or {}).get("annotations") or {}
    if LANDLOCK_ANNOTATION in annotations:
        plan.landlock = json.loads(annotations[LANDLOCK_ANNOTATION])
    return plan


def _console_size(size: dict | None) -> tuple[int, int] | None:
    if not size or not size.get("height") or not size.get("width"):
        return None
    return int(size["height"]), int(size["width"])


def _clamp(value: int, ceiling: int) -> int:
    if ceiling == resource.RLIM_INFINITY:
        return value
    if value == resource.RLIM_INFINITY or value < 0:
        return ceiling
    return min(value, ceiling)


def child_main(plan: InitPlan, sync_fd: int, error_fd: int) -> None:
    """Runs in the cloned child; never returns."""
    code = SETUP_FAILED
    try:
        for fd in plan.close_fds:
            os.close(fd)
        _reset_signals()
        if plan.stdio is not None:
            # Via fds >= 3 first, so that a permutation such as (1, 0, 2) does not clobber itself.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in plan.stdio]
            for target, fd in enumerate(high):
                os.dup2(fd, target)
                os.close(fd)
        _wait_for_parent(sync_fd)  # id maps written
        for fd, nstype in plan.join:
            linux.setns(fd, nstype)
            os.close(fd)
        if plan.setup_user:
            linux.setresgid(0)
            linux.setresuid(0)
        if plan.rootfs is not None:
            rootfs.prepare(plan.rootfs)
        if plan.hostname is not None:
            linux.sethostname(plan.hostname)
        if plan.domainname is not None:
            linux.setdomainname(plan.domainname)
        if plan.loopback_up:
            _loopback_up()
        for key, value in plan.sysctl.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as handle:
                handle.write(value)
        if plan.rootfs is not None:
            rootfs.finalize(plan.rootfs)
        # The parent moved us into the cgroup meanwhile (the first cgroup v1 move of a burst waits
        # for an RCU grace period, ~10-20 ms: overlapping it with our setup halves start latency).
        _wait_for_parent(sync_fd)
        os.close(sync_fd)
        if plan.unshare:
            linux.unshare(plan.unshare)
        become(plan.process, plan.console_fd)
    except ContainerStartError as err:
        code = err.exit_code
        _report(error_fd, code, str(err))
    except OSError as err:
        _report(error_fd, code, _describe(err))
    except BaseException as err:  # noqa: BLE001 - anything else is still a setup failure to report
        _report(error_fd, code, f"{type(err).__name__}: {err}")
    os._exit(code)


def _reset_signals() -> None:
    """Every disposition back to default and an empty mask before exec, as runc does.

    An ignored signal stays ignored across exec: Python ignores SIGPIPE and SIGXFSZ, and whoever
    started pallet may ignore more (a shell's ``cmd &`` ignores SIGINT, ``nohup`` SIGHUP) — a
    container's ``trap … INT HUP`` would then never fire. Caught ones are reset by exec itself.
    """
    for number in _signal.valid_signals():
        if number in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(number, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass   # glibc's reserved real-time signals
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def _wait_for_parent(sync_fd: int) -> None:
    if os.read(sync_fd, 1) != b"\0":
        os._exit(SETUP_FAILED)  # the parent gave up on us


def become(process: ProcessPlan, console_fd: int | None) -> None:
    """Turn this (already namespaced) process into the container's process and exec it."""
    for number, soft, hard in process.rlimits:
        resource.setrlimit(number, (soft, hard))
    if process.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(process.oom_score_adj))
    if process.apparmor_profile:
        _write_attr("apparmor/exec", "/proc/self/attr/exec", f"exec {process.apparmor_profile}")
    if process.selinux_label:
        _write_attr("exec", "/proc/self/attr/exec", process.selinux_label)
    os.setsid()
    if process.terminal and console_fd is not None:
        _attach_terminal(console_fd, process.uid, process.gid, process.console_size)
    # Without no_new_privs loading a filter needs CAP_SYS_ADMIN: load it while we still have it.
    # Landlock sets no_new_privs itself, and must not depend on the filter allowing its syscalls.
    seccomp_last = process.no_new_privileges or process.landlock is not None
    if process.seccomp is not None and not seccomp_last:
        process.seccomp.load()
    if process.capabilities is not None:
        caps.drop_bounding(process.drop_bounding)
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    _switch_user(process)
    if process.umask is not None:
        os.umask(process.umask)
    if process.capabilities is not None:
        linux.prctl(linux.PR_SET_KEEPCAPS, 0)
        caps.apply(process.capabilities)
    try:
        os.chdir(process.cwd)
    except OSError as err:
        raise ContainerStartError(f"chdir to cwd ({process.cwd!r}) set in config.json failed: {err.strerror}",
                                  SETUP_FAILED) from None
    if process.no_new_privileges:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    executable = find_executable(process.args[0], process.env)
    _cloexec_all()
    if process.landlock is not None:
        from pallet.plugins.runtime.builtin.landlock import restrict_self

        restrict_self(process.landlock)
    if process.seccomp is not None and seccomp_last:
        process.seccomp.load()
    try:
        os.execve(executable, process.args, _env_dict(process.env))
    except OSError as err:
        raise _exec_error(process.args[0], err) from None


def _switch_user(process: ProcessPlan) -> None:
    try:
        linux.setgroups(process.groups)
    except PermissionError:
        if process.groups:
            raise  # setgroups is denied in a user namespace whose gid map was written unprivileged
    linux.setresgid(process.gid)
    linux.setresuid(process.uid)


def find_executable(name: str, env: list[str]) -> str:
    """Look ``name`` up the way Go's exec.LookPath does (runc's behaviour), inside the container."""
    if "/" in name:
        try:
            mode = os.stat(name).st_mode
        except OSError as err:
            code = NOT_FOUND if err.errno in (errno.ENOENT, errno.ENOTDIR) else NOT_EXECUTABLE
            raise ContainerStartError(f'exec: "{name}": stat {name}: {err.strerror.lower()}', code) from None
        if stat.S_ISDIR(mode):
            raise ContainerStartError(f'exec: "{name}": is a directory', NOT_EXECUTABLE)
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o111:
            return candidate
    raise ContainerStartError(f'exec: "{name}": executable file not found in $PATH', NOT_FOUND)


def _exec_error(name: str, err: OSError) -> ContainerStartError:
    code = NOT_FOUND if err.errno == errno.ENOENT else NOT_EXECUTABLE
    return ContainerStartError(f'exec: "{name}": {err.strerror.lower()}', code)


def _env_dict(env: list[str]) -> dict[str, str]:
    return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in env)


def _cloexec_all() -> None:
    """Nothing of ours but stdio reaches the container's command."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def _write_attr(new_name: str, old_path: str, value: str) -> None:
    path = f"/proc/self/attr/{new_name}"
    with open(path if os.path.exists(path) else old_path, "w") as handle:
        handle.write(value)


def _attach_terminal(console_fd: int, uid: int, gid: int, size: tuple[int, int] | None) -> None:
    """Open a pty in the container's devpts, send the master over the console socket (SCM_RIGHTS)."""
    import socket
    import struct

    master, slave_path = linux.open_pty()
    os.chown(slave_path, uid, gid)
    with socket.socket(fileno=console_fd) as sock:
        socket.send_fds(sock, [slave_path.encode()], [master])
    os.close(master)
    slave = os.open(slave_path, os.O_RDWR)
    if size is not None:
        fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


def _loopback_up() -> None:
    import _socket  # the C module: ``socket`` costs ~4 ms of imports for nothing used here
    import struct

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock.fileno(), 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock.fileno(), 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        sock.close()


def _describe(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"container init failed: {where}{err.strerror or err}"


def _report(fd: int, code: int, message: str) -> None:
    try:
        os.write(fd, json.dumps({"code": code, "message": message}).encode())
    except OSError:
        pass
