"""The resident engine: a pre-imported pallet that forks a worker per command the thin client hands it.

One engine per run root, listening on ``<run root>/engine.sock`` (``SOCK_SEQPACKET``, so every message
keeps its bounds and may carry fds). ``pallet engine start`` starts it; ``kernel/launcher.py`` is the
client. Per connection:

1. the engine checks the peer's credentials (``SO_PEERCRED``): uid 0, or the uid the engine runs as,
   which are the users who could use the root directly; anyone else gets one refusal line;
2. it reads the request (argv, environment, cwd, umask, and fds 0, 1, 2 as ``SCM_RIGHTS``) and forks a
   *session* process, then goes back to ``accept`` at once;
3. the session forks the *worker*, which puts the received fds on 0, 1, 2, takes the cwd, environment
   and umask, and runs the normal CLI ``main``; the session relays the client's signals to the worker
   and sends back its exit status (or the signal it died of).

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
import signal
import socket
import sys
from pathlib import Path

SOCKET_NAME = "engine.sock"
PID_NAME = "engine.pid"
MAX_MESSAGE = 1 << 20
# What the engine does not preload (last name parts): entry scripts, and the Engine API server's package.
PRELOAD_SKIP = {"__main__", "launcher", "api"}


def socket_path(run_root: Path) -> Path:
    return Path(run_root) / SOCKET_NAME


def preload(run_root: Path) -> None:
    """Import what commands use, so that a worker starts with it all in memory (copy-on-write)."""
    import importlib
    import pkgutil

    import pallet.kernel

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


def serve(run_root: Path, ready_fd: int | None = None) -> None:
    """Listen on the run root's socket until SIGTERM; each accepted connection is served in a fork."""
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

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sessions are reaped by the kernel
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except InterruptedError:
                continue
            try:
                take(conn, listener)
            finally:
                conn.close()
    finally:
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


def take(conn: socket.socket, listener: socket.socket) -> None:
    """Check and read one request, then hand it to a forked session; never blocks on a slow client for long."""
    uid = peer_uid(conn)
    if not allowed(uid):  # told in a fork of its own: a refused user cannot hold the engine up
        if os.fork() == 0:
            try:
                listener.close()
                refuse(conn, f"permission denied: uid {uid} may not use this pallet engine (it serves the root "
                             f"of uid {os.geteuid()}); run the command as that user or as root")
            finally:
                os._exit(0)
        return
    conn.settimeout(10)
    try:
        data, ancdata, _flags, _addr = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    except OSError:
        return
    fds = received_fds(ancdata)
    try:
        if not data:
            return  # a probe (``pallet engine status``) or a client that died at once
        try:
            request = marshal.loads(data)
            argv, env, cwd = list(request["argv"]), dict(request["env"]), str(request["cwd"])
        except (ValueError, KeyError, TypeError, EOFError):
            refuse(conn, "malformed request to the pallet engine")
            return
        if len(fds) != 3:
            refuse(conn, "the request did not carry fds 0, 1 and 2")
            return
        differs = [key for key in CODE_ENV if env.get(key) != os.environ.get(key)]
        if differs:   # this engine imported other code and plugins than the client's would load
            redirect(conn, f"{', '.join(differs)} differ from the engine's")
            return
        if os.fork() == 0:
            code = 1
            try:
                listener.close()
                conn.settimeout(None)
                code = session(conn, fds, argv, env, cwd, int(request.get("umask", 0o022)))
            finally:
                os._exit(code)
    finally:
        for fd in fds:
            os.close(fd)


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
    os.read(read_end, 1)
    os.close(read_end)
    try:
        conn.send(marshal.dumps({"started": worker}))
    except OSError:
        pass
    pidfd = os.pidfd_open(worker)
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, "conn")
    selector.register(pidfd, selectors.EVENT_READ, "worker")
    client_gone = False
    while True:
        for key, _events in selector.select():
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
    """The worker: become the command's process (fds, cwd, env, umask, fresh stdio), run the CLI, exit."""
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
    os.close(ready_fd)
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
    return code


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
    """``python -m pallet.kernel.resident RUN_ROOT [READY_FD [PARENT_PID]]``: what ``pallet engine start``
    runs; with PARENT_PID (``pallet serve`` runs one beside itself) it ends with that process, even when
    the process is killed (``PR_SET_PDEATHSIG``; cleared in forks, so sessions and workers go on)."""
    run_root = Path(sys.argv[1])
    ready_fd = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    if len(sys.argv) > 3:
        from pallet.kernel import linux

        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(sys.argv[3]):
            return   # the parent died before the death signal was armed
    preload(run_root)
    serve(run_root, ready_fd)


if __name__ == "__main__":
    main()
