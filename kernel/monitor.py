"""Watch a container's process: the foreground CLI for ``run``, or a small detached monitor for ``run -d``.

The detached monitor is a double-forked copy of the CLI process (no new interpreter before
the start, so ``run -d`` stays fast). It becomes the child subreaper, starts the container
through the runtime and tells the CLI the outcome over a pipe. Then it ``execve``s into
:mod:`pallet.kernel.logpump`, a bare interpreter that writes the json-file log with a third of the
memory; when the container exits that process records the exit code and OOM kill, fires the
lifecycle hooks and honours ``--rm`` (:func:`pallet.kernel.exit_handler.after_exit`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

from pallet.kernel import faults, lifecycle, procs
from pallet.kernel.containers import ContainerStore
from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write_json
from pallet.kernel.logdrivers import open_sink, sink_params
from pallet.kernel.logpump import json_log_for, long_line_pieces
from pallet.kernel.stdio import ConsoleSocket, pump, raw_terminal

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _start_failed(engine, record, exc: BaseException) -> int:
    """A start the runtime refused: release everything; return Docker's 126/127 or re-raise."""
    code = lifecycle.start_error_code(exc)
    with contextlib.suppress(Exception):
        lifecycle.release(engine, record)
    store = ContainerStore(engine)
    with contextlib.suppress(PalletError):
        store.update(record.id, status="created" if code is None else "exited",
                     exit_code=code if code is not None else 128, pid=0, monitor_pid=0,
                     finished_at=time.time() if code is not None else 0.0)
    lifecycle.drop_starting(store.run_dir(record.id), record.id)
    if record.host_config.get("AutoRemove"):
        with contextlib.suppress(Exception):
            lifecycle.remove(engine, store.load(record.id))
    return code


# --- foreground ---------------------------------------------------------------------------

def run_attached(engine, record, bundle: Path, interactive: bool, streams: dict | None = None,
                 sig_proxy: bool = True) -> int:
    """Run the container with this process as its (sub)reaper; stream its output; return its exit code.

    ``streams`` says which of stdout/stderr are shown here (``-a``; all by default: the log keeps
    both anyway); without ``sig_proxy`` signals are not forwarded to the container's process.
    """
    store = ContainerStore(engine)
    procs.set_subreaper()
    target = {"pid": 0}
    shown = {"stdout": 1, "stderr": 2}
    if streams is not None:
        shown = {name: fd for name, fd in shown.items() if streams.get(name, True)}

    def forward(signum, _frame):
        if target["pid"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target["pid"], signum)

    tty_mode = bool(record.config.get("Tty"))
    if not tty_mode and sig_proxy:
        for signum in FORWARDED:
            signal.signal(signum, forward)
    console = ConsoleSocket() if tty_mode else None
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    keep_log = not _no_log(record) and (not record.host_config.get("AutoRemove") or _remote_log(record))
    pipes = {}
    try:
        if tty_mode:
            stdio = (devnull, devnull, devnull)
        elif keep_log:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            pipes = {out_r: "stdout", err_r: "stderr"}
            stdio = (0 if interactive else devnull, out_w, err_w)
        else:  # nothing to log: hand over our own streams
            stdio = (0 if interactive else devnull, shown.get("stdout", devnull), shown.get("stderr", devnull))
        try:
            pid = lifecycle.start_process(engine, record, bundle, stdio, str(console.path) if console else None)
        except PalletError as exc:
            code = _start_failed(engine, record, exc)
            if code is None:
                raise
            print(f"Error: {exc}", file=sys.stderr)
            return code
        target["pid"] = pid
        from pallet.kernel import health

        health.spawn_prober(engine, record, pid)
        for fd in (stdio[1], stdio[2]) if pipes else ():
            os.close(fd)
        log = (open_sink(sink_params(record, store.log_path(record.id)), json_log_for, long_line_pieces, engine.plugins)
               if keep_log else None)
        if tty_mode:
            master = console.receive_master()
            with raw_terminal(master) if interactive else contextlib.nullcontext():
                pump(pid, {master: "stdout"}, log, {"stdout": 1}, stdin_to=master if interactive else None)
            os.close(master)
        elif pipes:
            pump(pid, pipes, log, shown)
        code = procs.wait_for(pid)
        if log is not None:
            log.close()
    finally:
        os.close(devnull)
        for fd in pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
        if console:
            console.close()
    try:
        finished = lifecycle.finish(engine, store.load(record.id), code)
    except PalletError as exc:  # e.g. --rm could not remove everything: say so, keep the container's code
        print(f"Error: {exc}", file=sys.stderr)
    else:
        from pallet.kernel import restart

        restart.after_exit(engine, finished, code)  # as Docker's: the CLI returns, the container restarts
    return code


def _remote_log(record) -> bool:
    """A driver that sends the output elsewhere: it gets it even from a ``--rm`` container."""
    return (record.host_config.get("LogConfig") or {}).get("Type", "json-file") not in ("json-file", "local", "none")


def _no_log(record) -> bool:
    """--log-driver none: the output is not kept (``logs`` then says so, as Docker's does)."""
    return (record.host_config.get("LogConfig") or {}).get("Type") == "none"


# --- detached -----------------------------------------------------------------------------

def spawn(engine, record, bundle: Path, attach_first: bool = False) -> None:
    """Double-fork a monitor that starts the container; return once it runs (or raise why it did not).

    ``attach_first``: the caller attaches at once (``run -it``); the log pump waits for it before
    reading any output, so that nothing the container prints first is missing from the terminal.
    """
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.close(status_r)
            os.setsid()
            if os.fork() == 0:
                _monitor(engine, record, bundle, status_w, attach_first)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(status_w)
    faults.point("run.forked")
    os.waitpid(child, 0)
    with os.fdopen(status_r, "rb") as handle:
        raw = handle.read()
    lifecycle.drop_starting(ContainerStore(engine).run_dir(record.id), record.id, unlink=False)
    try:
        message = json.loads(raw or b"{}")
    except ValueError:
        message = {}
    if "pid" in message:
        return
    if message.get("code") is not None:
        raise PalletError(message.get("error") or "container failed to start", exit_code=message["code"])
    if not message.get("error"):
        # The monitor died without a word (killed): if it had started the container, nobody
        # supervises it now; it is stopped and its resources released before this fails.
        settled = None
        with contextlib.suppress(PalletError):
            settled = lifecycle.settle_unsupervised(engine, _once_exited(ContainerStore(engine).load(record.id)))
        if settled is not None and settled.error:
            raise PalletError("the container monitor died after starting the container; the container was stopped")
    raise PalletError(message.get("error") or "the container monitor exited before starting the container")


def _once_exited(record):
    """``record`` once its monitor has exited. The pipe closed without a word, so the monitor is exiting,
    but the kernel closes a dying process's files before it becomes a zombie: until then it still looks
    alive and would not be settled (a flake under load). Bounded, in case the pipe leaked elsewhere."""
    deadline = time.monotonic() + 10
    while record.monitor_pid and lifecycle.monitor_alive(record) and time.monotonic() < deadline:
        time.sleep(0.005)
    return record


def _report(status_w: int, message: dict) -> None:
    """Tell the CLI how the start went. The CLI may be gone (killed): the monitor goes on regardless,
    supervising the container it started (a BrokenPipeError here used to end it)."""
    with contextlib.suppress(OSError):
        os.write(status_w, json.dumps(message).encode())
    with contextlib.suppress(OSError):
        os.close(status_w)


def _monitor(engine, record, bundle: Path, status_w: int, attach_first: bool = False) -> None:
    """The monitor process: start the container, report to the CLI, then become the light log pump."""
    store = ContainerStore(engine)
    devnull = os.open(os.devnull, os.O_RDWR)
    errors = os.open(bundle / "monitor.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    for fd, target in ((0, devnull), (1, devnull), (2, errors)):
        os.dup2(target, fd)
    procs.set_subreaper()
    tty_mode = bool(record.config.get("Tty"))
    console = ConsoleSocket() if tty_mode else None
    keep = []
    stdin_r = None
    if record.config.get("OpenStdin"):
        stdin_r, stdin_w = os.pipe()  # held open so `-di` shells wait for input, as Docker's do
        keep.append(stdin_w)
    if tty_mode:
        stdio, sources = (devnull, devnull, devnull), {}
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdio, sources = (stdin_r if stdin_r is not None else devnull, out_w, err_w), {out_r: "stdout", err_r: "stderr"}
    try:
        listener = attach_listener(store.run_dir(record.id)) if attach_first else None
        pid = lifecycle.start_process(engine, record, bundle, stdio, str(console.path) if console else None)
    except BaseException as exc:
        failed = _start_failed(engine, record, exc) if isinstance(exc, PalletError) else None
        _report(status_w, {"error": str(exc), "code": failed})
        os._exit(1)
    # Only now: an ignored signal stays ignored across exec, and the container must get its SIGINT.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    log_path = os.devnull if _no_log(record) else str(store.log_path(record.id))
    # The log file exists once `run -d` returns (the quick-exit window below must not leave its creation
    # to a moment when its file system may be frozen or full: the log pump opens it then).
    with contextlib.suppress(OSError):
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640))
    faults.point("monitor.started")
    _report(status_w, {"pid": pid})
    try:
        from pallet.kernel import health

        health.spawn_prober(engine, record, pid)
        if listener is None:
            listener = attach_listener(store.run_dir(record.id))  # made after the start: clients retry
        if tty_mode:
            sources = {console.receive_master(): "stdout"}
            console.close()
        else:
            os.close(out_w)
            os.close(err_w)
        if stdin_r is not None:
            os.close(stdin_r)
        items = [f"{fd}:{stream}" for fd, stream in sources.items()]
        items.append(f"{listener}:{'attach-first' if attach_first else 'attach'}")
        stdin_for_clients = next(iter(sources)) if tty_mode else (keep[0] if keep else None)
        if stdin_for_clients is not None:
            items.append(f"{stdin_for_clients}:stdin")
        for fd in [*sources, *keep, listener]:
            os.set_inheritable(fd, True)
        params = bundle / "monitor.json"
        config = engine.config
        atomic_write_json(params, {
            "id": record.id, "root": str(config.root), "run_root": str(config.run_root),
            "config_path": str(config.config_path), "storage_driver": config.storage_driver_flag,
            "storage_opts": [f"{k}={v}" for k, v in config.storage_opt_flags.items()],
            "log": sink_params(record, store.log_path(record.id), engine.plugins),
            "sys_path": sys.path, "site": _needs_site(),
        }, durable=False)
        # The folder holding the ``pallet`` package (a checkout or site-packages), so that the log pump
        # records the exit with this same pallet and not whichever one site-packages would give.
        home = Path(sys.modules["pallet"].__file__).resolve().parent.parent
        if _exits_within(pid, quick_exit_window(), list(sources)):
            _record_quick_exit(engine, home, pid, log_path, params, items)
        script = Path(__file__).with_name("logpump.py")
        os.execv(sys.executable, [sys.executable, "-I", "-S", str(script), str(home), str(pid),
                                  log_path, str(params), *items])
    except BaseException:
        import traceback

        traceback.print_exc()
        exit_code = procs.wait_for(pid)
        lifecycle.finish(engine, store.load(record.id), exit_code)
    finally:
        os._exit(1)


QUICK_EXIT_WINDOW = 0.05


def quick_exit_window() -> float:
    """How long the monitor watches a detached container before it becomes the light log pump:
    ``PALLET_QUICK_EXIT_MS`` (0 turns it off), else 50 ms."""
    text = os.environ.get("PALLET_QUICK_EXIT_MS", "")
    try:
        return max(0.0, float(text) / 1000) if text else QUICK_EXIT_WINDOW
    except ValueError:
        return QUICK_EXIT_WINDOW


# Once the container has written something, how much longer the monitor waits for it to end before it
# hands over to the log pump: `echo …` ends within microseconds of its output, while a service's first
# lines must reach the log (and `pallet logs`) about as soon as they did without the window.
AFTER_OUTPUT = 0.005


def _exits_within(pid: int, seconds: float, outputs: list[int]) -> bool:
    """Whether the container's process ends within ``seconds`` (its output waits in the pipes meanwhile),
    or within :data:`AFTER_OUTPUT` of its first output."""
    if seconds <= 0:
        return False
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        for fd in outputs:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            events = poller.poll(remaining * 1000)
            if any(fd == pidfd for fd, _mask in events):
                return True
            for fd, _mask in events:   # output (or its end): not long now, either way
                poller.unregister(fd)
                deadline = min(deadline, time.monotonic() + AFTER_OUTPUT)
        return False
    finally:
        os.close(pidfd)


def _record_quick_exit(engine, home: Path, pid: int, log_path: str, params: Path, items: list[str]) -> None:
    """A container that ended before its monitor became the log pump (``true``, ``echo``, a failing
    command): this process still has pallet imported and its plugins registered, so it drains the output
    to the log and records the exit itself, without the pump's interpreter start or the hand-over to an
    engine (the exit's whole cost then sits between the container's end and ``wait`` returning)."""
    from pallet.kernel import exit_handler, logpump

    faults.point("exit.in-monitor")
    logpump.pump(str(home), pid, log_path, str(params), logpump.parse_items(items),
                 record_exit=lambda code: exit_handler.after_exit(str(params), code, unless_recorded=True,
                                                                  engine=engine))
    os._exit(0)


def _needs_site() -> bool:
    """Whether this process imports through a hook that its ``sys.path`` does not show: an editable
    install's finder (``__editable___NAME_finder``) other than pallet's own (the log pump puts pallet's
    checkout first itself)."""
    for finder in sys.meta_path:
        module = (finder if isinstance(finder, type) else type(finder)).__module__
        if module.startswith("__editable__") and not module.startswith("__editable___pallet_"):
            return True
    return False


ATTACH_SOCKET = "attach.sock"


def attach_listener(run_dir: Path) -> int:
    """The run dir's attach socket (SOCK_SEQPACKET), bound through /proc/self/fd so that a deep run root
    does not exceed a unix socket path's 108 bytes; returns the listening fd."""
    import socket

    with contextlib.suppress(FileNotFoundError):
        (run_dir / ATTACH_SOCKET).unlink()  # a previous start's
    directory = os.open(run_dir, os.O_PATH | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{directory}/{ATTACH_SOCKET}")
        sock.listen(8)
    finally:
        os.close(directory)
    return sock.detach()

