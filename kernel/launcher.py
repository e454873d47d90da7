"""The thin ``pallet`` client: hand the command to the root's resident engine, or run it directly.

This file imports the standard library's built-in modules only (``_socket``, ``_signal``, ``marshal``,
``_struct``; no ``json``, which pulls in ``re``, nor ``signal``/``socket``, which pull in ``enum``) and no
part of pallet, so it can run as ``python3 -I -S kernel/launcher.py ARGS`` (~10 ms of interpreter instead of
~50 ms with ``site``, plus click, plus pallet's own imports). ``docs/perf.md`` describes the design.

It works out the run root as the CLI does (``--run-root``, ``PALLET_RUN_ROOT``, ``[engine]`` of the config
file, ``--root``/``PALLET_ROOT`` + ``/run``, ``/run/pallet``) and connects to ``<run root>/engine.sock``.
No socket there: the direct path, exactly as without an engine (``python -m pallet.kernel.cli`` with
the same argv, environment and cwd). A socket nobody answers on (a killed engine): one line on stderr,
the stale socket is removed, and the direct path. Otherwise argv, environment, cwd and umask go to the
engine with fds 0, 1 and 2 (``SCM_RIGHTS``); the engine forks a worker that runs the normal CLI on
exactly those fds. Signals the client gets are forwarded to the worker; the worker's exit status
becomes the client's (a death by signal is repeated on the client).
"""

import _signal as signal
import _socket as socket
import _struct
import marshal
import os
import sys

SOCKET_NAME = "engine.sock"
DEFAULT_CONFIG = "/etc/pallet/pallet.toml"
DEFAULT_ROOT = "/var/lib/pallet"
DEFAULT_RUN_ROOT = "/run/pallet"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH,
             signal.SIGUSR1, signal.SIGUSR2)
MAX_MESSAGE = 1 << 16
# Global options that take a value (kernel/cli/__init__.py), so the command word can be found.
VALUE_OPTIONS = {"--root", "--run-root", "--storage-driver", "-s", "--storage-opt", "--config", "--cluster-store"}
# Commands that always run directly: the engine's own controls.
DIRECT_COMMANDS = {"engine"}
# Commands whose own failures exit 125, as Docker's run-type commands do.
RUN_LIKE = {"run", "create", "start", "exec", "wait"}


def global_options(argv):
    """(options before the command word, the command word or None) — a cheap mirror of click's parsing."""
    found, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return found, (argv[i + 1] if i + 1 < len(argv) else None)
        if not arg.startswith("-") or arg == "-":
            return found, arg
        name, eq, value = arg.partition("=")
        if name in VALUE_OPTIONS:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            found.setdefault(name, value)
        i += 1
    return found, None


def run_root(argv, env):
    """The run root the CLI would use for ``argv`` and ``env`` (see ``Config.load``)."""
    options, _command = global_options(argv)
    explicit = options.get("--run-root") or env.get("PALLET_RUN_ROOT")
    if explicit:
        return explicit
    config_path = options.get("--config") or env.get("PALLET_CONFIG")
    engine = config_engine_section(config_path or DEFAULT_CONFIG)
    if engine.get("run_root"):
        return str(engine["run_root"])
    root = options.get("--root") or env.get("PALLET_ROOT")
    return os.path.join(root, "run") if root else DEFAULT_RUN_ROOT


def config_engine_section(path):
    """The ``[engine]`` table of the config file; TOML is parsed only when the file mentions it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {}
    if b"engine" not in data:
        return {}
    try:
        import tomllib

        section = tomllib.loads(data.decode()).get("engine", {})
    except (ValueError, UnicodeDecodeError):
        return {}  # the direct path reports the broken file; the engine would too
    return section if isinstance(section, dict) else {}


def run_direct(argv):
    """Run the full CLI in this process (when ``site`` is loaded) or exec an interpreter that can."""
    if not sys.flags.no_site and not sys.flags.isolated:
        from pallet.kernel.cli import main as cli_main

        cli_main(argv)
        return
    # -P: the cwd is not put on sys.path, so a ``json.py`` (say) where the user runs ``pallet`` is not imported.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "pallet.kernel.cli", *argv])


def say(message):
    os.write(2, f"pallet: {message}\n".encode(errors="replace"))


def connect(path):
    """A connected socket to the engine at ``path``; None when there is none (silently) or it is dead (said once)."""
    try:
        before = os.stat(path)
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(path)
        sock.setblocking(True)
    except (ConnectionRefusedError, FileNotFoundError):  # a socket file nobody listens on
        sock.close()
        if before.st_mode & 0o170000 != 0o140000:  # not a socket: nothing an engine made, left alone
            say(f"{path} is not an engine socket; running the command directly")
            return None
        say(f"the engine at {path} is not running (stale socket removed); running the command directly")
        try:
            if os.stat(path).st_ino == before.st_ino:  # a new engine may have just renamed its socket in
                os.unlink(path)
        except OSError:
            pass
        return None
    except PermissionError:
        sock.close()
        return None  # not ours to use: the direct path says what this user may do
    except OSError as exc:  # not a socket, or not a SEQPACKET one: nothing an engine made
        sock.close()
        say(f"cannot use the engine socket {path} ({exc.strerror}); running the command directly")
        return None
    return sock


def std_fds():
    """fds 0, 1, 2 to hand over; a closed one is replaced by /dev/null (the worker sees the same fd set)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def send_request(sock, argv):
    umask = os.umask(0)
    os.umask(umask)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    payload = marshal.dumps({"argv": argv, "env": dict(os.environ), "cwd": cwd, "umask": umask})
    fds = std_fds()
    sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _struct.pack("3i", *fds))])


def receive(sock):
    """The next message from the engine, or None when the connection is gone."""
    while True:
        try:
            data = sock.recv(MAX_MESSAGE)
        except InterruptedError:
            continue
        except OSError:
            return None
        return marshal.loads(data) if data else None


def forward_signals(sock):
    def forward(signum, _frame):
        try:
            sock.send(marshal.dumps({"signal": signum}))
        except OSError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)


def finish(status):
    """Leave with the worker's status: an exit code, or the same signal it died of."""
    if "signal" in status:
        signum = status["signal"]
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    return status.get("exit", 1)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    _options, command = global_options(argv)
    sock = None
    if command not in DIRECT_COMMANDS and not os.environ.get("PALLET_NO_ENGINE"):
        sock = connect(os.path.join(run_root(argv, os.environ), SOCKET_NAME))
    if sock is None:
        return run_direct(argv)
    try:
        send_request(sock, argv)
    except OSError:
        reply = receive(sock)  # a refusal is sent before the request is read, and stays readable
        if reply is None:
            sock.close()
            say("the engine went away before taking the command; running it directly")
            return run_direct(argv)
    else:
        # From here signals go to the worker (queued by the engine until it exists); the request went first.
        forward_signals(sock)
        reply = receive(sock)
    if reply is None:
        sock.close()
        say("the engine went away before taking the command; running it directly")
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        return run_direct(argv)
    if "direct" in reply:   # the engine loaded other code than this environment asks for: not an error
        sock.close()
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        return run_direct(argv)
    if "refused" in reply:
        os.write(2, f"Error: {reply['refused']}\n".encode(errors="replace"))
        sys.exit(125 if command in RUN_LIKE else 1)
    status = receive(sock)
    if status is None:
        say("lost the connection to the engine's worker; the command's outcome is unknown")
        sys.exit(125)
    sys.exit(finish(status))


if __name__ == "__main__":
    main()
