"""The resident engine: a pre-imported pallet that forks a worker per command the thin client hands it.

One engine per run root, listening on ``<run root>/engine.sock`` (``SOCK_SEQPACKET``, so every message
keeps its bounds and may carry fds). ``pallet engine start`` starts it; ``kernel/launcher.py`` is the
client. Per connection:

1. the engine checks the peer's credentials (``SO_PEERCRED``): uid 0, or the uid the engine runs as,
   which are the users who could use the root directly; anyone else gets one refusal line;
2. it reads the request (argv, environment, cwd, umask, and fds 0, 1, 2 as ``SCM_RIGHTS``) and hands it,
   with the connection, to the *spare*: a session process forked before the request came, whose own
   *worker* is forked too (:func:`make_spare`), so that no fork of this big process lies between a
   request and its command; then it forks the next spare and goes back to ``accept``;
3. the session passes the request to its worker, which puts the received fds on 0, 1, 2, takes the cwd,
   environment and umask, and runs the normal CLI ``main``; the session relays the client's signals to
   the worker and sends back its exit status (or the signal it died of).

The engine keeps no state about commands in flight, so killing it (even with ``kill -9``) affects no
command already taken: each session finishes on its own. A client whose connection is dropped before
its command was taken runs it directly; see ``kernel/launcher.py``.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import io
import marshal
import os
import select
import signal
import socket
import sys
from pathlib import Path

from pallet.kernel import faults

SOCKET_NAME = "engine.sock"
PID_NAME = "engine.pid"
MAX_MESSAGE = 1 << 20
# What the engine does not preload (last name parts): entry scripts, and the Engine API server's package.
PRELOAD_SKIP = {"__main__", "launcher", "api"}
IDLE_WARM = 0.05  # seconds without a command before the records are parsed again (keep_records)


def socket_path(run_root: Path) -> Path:
    return Path(run_root) / SOCKET_NAME


def preload(run_root: Path) -> None:
    """Import what commands use, so that a worker starts with it all in memory (copy-on-write)."""
    import importlib
    import pkgutil

    import pallet.kernel
    from pallet.kernel import codecache

    codecache.install()

    # All of the kernel's modules and of each plugin's package, not a list of those a command imports at
    # the top: what `run` imports inside its functions (the built-in runtime's launch and seccomp, cffi
    # and ctypes, the spec builders) was imported again by every worker, ~20 modules a run. Not the
    # Engine API server (`pallet serve` is its own process, and aiohttp alone is ~20 MB).
    def walk(package) -> None:
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name.rpartition(".")[2] in PRELOAD_SKIP:
                continue
            module = importlib.import_module(info.name)
            # What the module imports only inside its functions, named by it: pyroute2's package alone
            # is ~150-250 ms of imports that every bridge `run` paid again in its worker.
            for name in getattr(module, "PALLET_PRELOAD", ()):
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
            if info.ispkg:
                walk(module)

    walk(pallet.kernel)
    from pallet.kernel import linux
    from pallet.kernel.entrypoints import listing
    from pallet.kernel.plugins import GROUPS

    linux.load_clone()
    found = listing(list(GROUPS.values()), run_root)
    for namespace in GROUPS.values():   # imported, not registered: each worker registers them as a command does
        for _name, value in found.entry_points(namespace):
            try:
                module = importlib.import_module(value.partition(":")[0])
                home = module if hasattr(module, "__path__") else importlib.import_module(
                    module.__name__.rpartition(".")[0] or module.__name__)
                if hasattr(home, "__path__") and home.__name__.count(".") >= 1:
                    walk(home)   # the plugin's own package: what its driver imports when it works
            except Exception:
                pass  # a broken plugin is reported by the command that loads it
    import selectors  # noqa: F401  (each session's relay loop)

    from pallet.kernel import plugins

    plugins.preload(run_root)   # registered once here; a worker's command adopts it (plugins.for_command)

    # Everything imported so far lives as long as the engine: out of the collector's sight, a forked
    # worker's collections do not touch (and so copy) those pages; ~3 ms less per command here.
    gc.collect()
    gc.freeze()


def allowed(uid: int) -> bool:
    """Who may use this engine: root, and the user the engine (and so the root's state) belongs to."""
    return uid == 0 or uid == os.geteuid()


def keep_records(root: Path | None) -> None:
    """Parse ``root``'s container records into the shared cache (``ContainerStore.all(shared=True)``):
    done while the engine is idle, so a worker's ``ps`` inherits them parsed and only stats each file."""
    if root is None:
        return
    from pallet.kernel.containers import ContainerStore

    try:
        ContainerStore.of_root(root).all(shared=True)
    except Exception:  # a damaged record is the command's to report, not the engine's
        pass


def serve(run_root: Path, ready_fd: int | None = None, root: Path | None = None) -> None:
    """Listen on the run root's socket until SIGTERM; each accepted connection is served in a fork.
    With ``root`` (the data root of ``pallet engine start``), its container records are parsed again
    after each command is handed over (unless another one waits) and once the engine has been idle for
    ``IDLE_WARM`` seconds after a command, so that spares inherit them parsed."""
    run_root = Path(run_root)
    run_root.mkdir(parents=True, exist_ok=True)
    path = socket_path(run_root)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    temp = run_root / f".{SOCKET_NAME}.{os.getpid()}"
    try:
        temp.unlink()
    except FileNotFoundError:
        pass
    listener.bind(str(temp))
    os.chmod(temp, 0o666)  # anyone may connect; SO_PEERCRED decides, so a refused user is told why
    listener.listen(128)
    os.rename(temp, path)  # visible only once it accepts: a client never sees a half-made engine
    bound = os.stat(path).st_ino
    pid_file = run_root / PID_NAME
    pid_file.write_text(f"{os.getpid()}\n")

    # SIGTERM/SIGINT raise SystemExit where the engine is (in accept, select, or a fault pause), and also mark
    # it stopping and wake its loop (the wakeup pipe): a SystemExit raised inside os.fork's at-fork callbacks
    # or a destructor is printed and dropped, and the engine ran on after `engine stop` (CI left one so).
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _WAKE_FDS[:] = [wake_r, wake_w]
    stopping: list[int] = []

    def stop(signum, _frame):
        stopping.append(signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sessions are reaped by the kernel
    keep_records(root)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    stale = False  # a command ran since the records were last parsed
    spare: Spare | None = None
    try:
        while not stopping:
            if spare is None:
                spare = make_spare(listener)
                continue   # (stopping may have been set while it forked)
            ready = select.select([listener, wake_r], [], [], IDLE_WARM if stale else None)[0]
            if wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(wake_r, 64)
                continue
            if not ready:
                keep_records(root)  # idle: only between commands, never while one waits to be taken
                stale = False
                spare.close()       # forked before the records were parsed: its worker would parse them
                spare = None
                faults.point("engine.records-kept")
                continue
            try:
                conn, _ = listener.accept()
            except InterruptedError:
                continue
            try:
                spare = take(conn, listener, spare)
            finally:
                conn.close()
            stale = root is not None
            if spare is None and stale and not select.select([listener], [], [], 0)[0]:
                keep_records(root)   # before the next spare forks: what others changed meanwhile (cheap:
                #                      only replaced files are parsed); the command's own changes come later
    finally:
        _drop_wakeup()
        if spare is not None:
            spare.close()
        try:
            if os.stat(path).st_ino == bound:  # not a newer engine's socket
                path.unlink()
                pid_file.unlink()
        except OSError:
            pass
        listener.close()


def peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def take(conn: socket.socket, listener: socket.socket, spare: Spare) -> Spare | None:
    """Check and read one request, then hand it to the spare session; never blocks on a slow client for
    long. Returns the spare if it was not used (the request was refused or sent back)."""
    uid = peer_uid(conn)
    if not allowed(uid):  # told in a fork of its own: a refused user cannot hold the engine up
        if os.fork() == 0:
            try:
                listener.close()
                _forget_engine_signals()
                refuse(conn, f"permission denied: uid {uid} may not use this pallet engine (it serves the root "
                             f"of uid {os.geteuid()}); run the command as that user or as root")
            finally:
                os._exit(0)
        return spare
    conn.settimeout(10)
    try:
        data, ancdata, _flags, _addr = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    except OSError:
        return spare
    fds = received_fds(ancdata)
    try:
        if not data:
            return spare  # a probe (``pallet engine status``) or a client that died at once
        try:
            request = marshal.loads(data)
            _parse(request)
        except (ValueError, KeyError, TypeError, EOFError):
            refuse(conn, "malformed request to the pallet engine")
            return spare
        if len(fds) != 3:
            refuse(conn, "the request did not carry fds 0, 1 and 2")
            return spare
        env = request["env"]
        differs = [key for key in CODE_ENV if env.get(key) != os.environ.get(key)]
        if differs:   # this engine imported other code and plugins than the client's would load
            redirect(conn, f"{', '.join(differs)} differ from the engine's")
            return spare
        conn.settimeout(None)
        if not spare.hand(data, [conn.fileno(), *fds]):   # it died (killed): a new one, now
            spare.close()
            spare = make_spare(listener, close=[conn.fileno(), *fds])
            if not spare.hand(data, [conn.fileno(), *fds]):
                refuse(conn, "the pallet engine could not start a session for the command")
                return spare
        spare.close()
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _parse(request: dict) -> tuple[list[str], dict, str, int]:
    return (list(request["argv"]), dict(request["env"]), str(request["cwd"]), int(request.get("umask", 0o022)))


SPARE_NAME = b"pallet-spare"   # the comm (``ps``, /proc/PID/comm) of a spare session and its worker


class Spare:
    """A session forked before its request, with its worker forked and waiting too. ``hand`` gives it
    a request and its fds (the connection first); the engine then closes its end. A spare whose engine
    end is closed unused (the engine stopped or died, or it was replaced) exits, and so does its worker."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid, self.sock = pid, sock

    def hand(self, data: bytes, fds: list[int]) -> bool:
        try:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


def make_spare(listener: socket.socket, close: list[int] = ()) -> Spare:
    """Fork a spare session (``close``: fds of the engine's that it must not keep)."""
    engine_end, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            listener.close()
            _forget_engine_signals()
            engine_end.close()
            for fd in close:
                os.close(fd)
            code = spare_session(spare_end)
        finally:
            os._exit(code)
    spare_end.close()
    return Spare(pid, engine_end)


_WAKE_FDS: list[int] = []   # the engine's wakeup pipe (serve): not its children's


def _drop_wakeup() -> None:
    """No wakeup fd any more, and the engine's wakeup pipe closed (in the engine as it ends, or a child)."""
    signal.set_wakeup_fd(-1)
    for fd in _WAKE_FDS:
        _close(fd)
    _WAKE_FDS.clear()


def _forget_engine_signals() -> None:
    """In a child of the engine: default SIGTERM/SIGINT, no wakeup fd, not the engine's pipe."""
    _drop_wakeup()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _receive(sock: socket.socket, nfds: int) -> tuple[bytes, list[int]] | None:
    try:
        data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(nfds * array.array("i").itemsize))
    except OSError:
        return None
    fds = received_fds(ancdata)
    if not data or len(fds) != nfds:
        for fd in fds:
            os.close(fd)
        return None
    return data, fds


def _own_name() -> bytes:
    with open("/proc/self/comm", "rb") as handle:
        return handle.read().rstrip(b"\n")


def _name(name: bytes) -> None:
    """Set this process's comm, what ``ps`` and /proc/PID/comm show (a spare is told apart so)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as handle:
        handle.write(name)


def spare_session(engine_end: socket.socket) -> int:
    """Fork the worker, wait for a request from the engine, pass it on, then be its session."""
    own_name = _own_name()
    _name(SPARE_NAME)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a signal for the worker comes as a message, not to us
    session_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)  # the worker's "set up" mark: only then is it told "started"
    worker = os.fork()
    if worker == 0:
        code = 0
        try:
            engine_end.close()
            session_end.close()
            os.close(read_end)
            got = _receive(worker_end, 3)
            worker_end.close()
            if got is not None:   # else the session went away unused
                _name(own_name)
                code = 125
                code = work(got[1], *_parse(marshal.loads(got[0])), write_end)
        finally:
            os._exit(code)
    worker_end.close()
    os.close(write_end)
    got = _receive(engine_end, 4)
    engine_end.close()
    if got is None:   # the engine stopped, died or replaced this spare: the worker sees EOF and exits
        session_end.close()
        return 0
    _name(own_name)
    data, (conn_fd, *fds) = got
    conn = socket.socket(fileno=conn_fd)
    try:
        session_end.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    except OSError:   # the waiting worker was killed: fork one now, as a session without a spare would
        os.close(read_end)
        session_end.close()
        return session(conn, fds, *_parse(marshal.loads(data)))
    session_end.close()
    for fd in fds:
        os.close(fd)
    return relay(conn, worker, read_end)


def received_fds(ancdata) -> list[int]:
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return list(fds)


# What decides which code and plugins a pallet process can import (sys.path). The engine fixed its own at start;
# a client whose values differ is sent back to run its command directly, where they take effect.
CODE_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE")


def redirect(conn: socket.socket, reason: str) -> None:
    """Tell the client to run the command itself (``{"direct": reason}``); nothing ran here."""
    try:
        conn.send(marshal.dumps({"direct": reason}))
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        while conn.recv(MAX_MESSAGE):
            pass
    except OSError:
        pass


def refuse(conn: socket.socket, message: str) -> None:
    """One error line for the client, which exits as the CLI does for a failure of its command (1, or 125).

    The client's request is read (and dropped) until it hangs up: closing with it unread would reset the
    connection, and the client would see no refusal, only a vanished engine."""
    try:
        conn.send(marshal.dumps({"refused": message}))
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        while conn.recv(MAX_MESSAGE):
            pass
    except OSError:
        pass


def session(conn: socket.socket, fds: list[int], argv: list[str], env: dict, cwd: str, umask: int) -> int:
    """Fork the worker, relay the client's signals to it, and send back how it ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a signal for the worker comes as a message, not to us
    read_end, write_end = os.pipe2(os.O_CLOEXEC)  # the worker's "set up" mark: only then is it told "started"
    worker = os.fork()
    if worker == 0:
        os.close(read_end)
        conn.close()
        os._exit(work(fds, argv, env, cwd, umask, write_end))
    os.close(write_end)
    for fd in fds:
        os.close(fd)
    fds.clear()
    return relay(conn, worker, read_end)


def relay(conn: socket.socket, worker: int, read_end: int) -> int:
    """The session's part once its worker has the command: "started", signals, and how it ended (as the
    worker reports it on ``read_end`` when done, or as its exit says when it died without a report)."""
    os.read(read_end, 1)
    try:
        conn.send(marshal.dumps({"started": worker}))
    except OSError:
        pass
    pidfd = os.pidfd_open(worker)
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, "conn")
    selector.register(pidfd, selectors.EVENT_READ, "worker")
    selector.register(read_end, selectors.EVENT_READ, "report")
    client_gone = False
    while True:
        for key, _events in selector.select():
            if key.data == "report":
                report = os.read(read_end, 64)
                selector.unregister(read_end)
                if report.startswith(b"e") and not client_gone:   # else EOF: its exit will tell
                    with contextlib.suppress(OSError):
                        conn.send(marshal.dumps({"exit": int(report[1:])}))
                    selector.unregister(conn)   # told: nothing more to relay; the worker is still reaped
                    client_gone = True
                continue
            if key.data == "worker":
                _pid, status = os.waitpid(worker, 0)
                if os.WIFSIGNALED(status):
                    message = {"signal": os.WTERMSIG(status)}
                else:
                    message = {"exit": os.waitstatus_to_exitcode(status)}
                if not client_gone:
                    try:
                        conn.send(marshal.dumps(message))
                    except OSError:
                        pass
                return 0
            try:
                data = conn.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:  # the client died (kill -9): so does its command, as it would directly
                selector.unregister(conn)
                client_gone = True
                _signal(worker, signal.SIGKILL)
                continue
            try:
                signum = int(marshal.loads(data)["signal"])
            except (ValueError, KeyError, TypeError, EOFError):
                continue
            _signal(worker, signum)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, ValueError, OSError):
        pass


def work(fds: list[int], argv: list[str], env: dict, cwd: str, umask: int, ready_fd: int) -> int:
    """The worker: become the command's process (fds, cwd, env, umask, fresh stdio), run the CLI, exit.

    On ``ready_fd`` (a pipe to its session) it writes ``x`` once set up, and ``e<code>`` when the command
    is done, once fds 0, 1 and 2 are closed: the session tells the client at once, instead of waiting
    for this big process to be torn down (a death by a signal it still learns from the exit). Processes
    the command forks do not keep that pipe."""
    try:
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target, inheritable=True)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.setsid()  # its own session and group, away from the engine's (it has no terminal to take)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT,
                       signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it at start-up
        os.umask(umask)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        fresh_stdio()
        atexit._clear()
    except Exception as exc:
        os.write(2, f"Error: the pallet engine could not set up the command: {exc}\n".encode(errors="replace"))
        os.write(ready_fd, b"x")
        return 125
    os.write(ready_fd, b"x")
    os.register_at_fork(after_in_child=lambda: _close(ready_fd))   # a monitor the command forks, say
    sys.argv = ["pallet", *argv]
    code = 0
    try:
        from pallet.kernel.cli import main

        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        with contextlib.suppress(OSError):
            for fd in (0, 1, 2):   # the client's pipes see EOF before it exits (no lingering holder)
                os.close(fd)
            os.write(ready_fd, b"e%d" % code)
    return code


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def fresh_stdio() -> None:
    """New ``sys.stdin/stdout/stderr`` on fds 0, 1, 2, buffered as the interpreter would for them."""
    encoding = os.environ.get("PYTHONIOENCODING", "").partition(":")[0] or "utf-8"

    def stream(fd: int, mode: str, errors: str):
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=tty or fd == 2,
                                write_through=fd == 2)

    sys.stdin = sys.__stdin__ = stream(0, "r", "strict")
    sys.stdout = sys.__stdout__ = stream(1, "w", "strict")
    sys.stderr = sys.__stderr__ = stream(2, "w", "backslashreplace")


def status(run_root: Path) -> dict:
    """Whether an engine answers on the run root's socket, with its pid."""
    path = socket_path(run_root)
    pid = None
    try:
        pid = int((Path(run_root) / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        pass
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(str(path))
        running = True
    except OSError:
        running = False
    finally:
        probe.close()
    return {"running": running, "pid": pid if running else None, "socket": str(path)}


def main() -> None:
    """``python -m pallet.kernel.resident [--root=ROOT] RUN_ROOT [READY_FD [PARENT_PID]]``: what ``pallet engine start``
    runs; with PARENT_PID (``pallet serve`` runs one beside itself) it ends with that process, even when
    the process is killed (``PR_SET_PDEATHSIG``; cleared in forks, so sessions and workers go on)."""
    args = sys.argv[1:]
    root = None
    if args and args[0].startswith("--root="):  # the data root whose records it keeps parsed
        root, args = Path(args[0].partition("=")[2]), args[1:]
    run_root = Path(args[0])
    ready_fd = int(args[1]) if len(args) > 1 and args[1] != "-" else None
    if len(args) > 2:
        from pallet.kernel import linux

        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(args[2]):
            return   # the parent died before the death signal was armed
    preload(run_root)
    serve(run_root, ready_fd, root)


if __name__ == "__main__":
    main()
