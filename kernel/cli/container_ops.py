"""Container commands that look inside a container: logs, exec, top, stats, cp, diff, export, commit, prune."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import click

from pallet.kernel.cli.container_flags import EngineCommand
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.kernel.humanize import binary_size, size as human_size


def _store(engine):
    from pallet.kernel.containers import ContainerStore
    return ContainerStore(engine)


def _running(engine, name):
    from pallet.kernel import lifecycle

    engine.plugins.engage("storage", "runtime")
    record = lifecycle.refresh(engine, _store(engine).get(name))
    if not record.running:
        raise Conflict(f"Container {record.id} is not running")
    return record


# --- logs ----------------------------------------------------------------------------------

def show_logs(engine, record, follow: bool, tail: int | None, timestamps: bool,
              window: tuple[float | None, float | None] = (None, None)) -> None:
    """Print the json-file log; ``window`` (since, until) in Unix seconds keeps the entries inside it."""
    from pallet.kernel import lifecycle
    from pallet.kernel.policyopts import log_time
    from pallet.kernel.stdio import read_log

    since, until = window

    if (record.host_config.get("LogConfig") or {}).get("Type") == "none":
        raise PalletError('configured logging driver does not support reading')
    path = _store(engine).log_path(record.id)
    from pallet.kernel.logdrivers import failure

    problem = failure(path)
    if problem:
        print(f"pallet: warning: {problem}", file=sys.stderr)
    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}

    def emit(stream, stamp, text):
        line = (f"{stamp} {text}" if timestamps else text).encode()
        out[stream].write(line)
        out[stream].flush()

    entries = list(read_log(path))
    if since is not None or until is not None:
        entries = [e for e in entries if (since is None or log_time(e[1]) >= since)
                   and (until is None or log_time(e[1]) < until)]
    if tail is not None:
        entries = entries[-tail:] if tail else []
    for entry in entries:
        emit(*entry)
    if not follow or (until is not None and until <= time.time()):
        return
    offset = path.stat().st_size if path.exists() else 0
    inode = path.stat().st_ino if path.exists() else None
    while True:
        complete = b""
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino != inode:  # rotated: the new file from its start
                inode, offset = path.stat().st_ino, 0
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                offset += len(complete)
                for raw in complete.splitlines():
                    with contextlib.suppress(ValueError):
                        entry = json.loads(raw)
                        if until is not None and log_time(entry["time"]) >= until:
                            return
                        emit(entry["stream"], entry["time"], entry["log"])
        try:
            current = lifecycle.refresh(engine, _store(engine).load(record.id))
        except PalletError:
            return
        if not current.running:
            if not complete:
                return
            continue
        time.sleep(0.1)


# --- exec ----------------------------------------------------------------------------------

@click.command("exec", cls=EngineCommand, context_settings={"help_option_names": ["--help"], "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables.")
@click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("-w", "--workdir", default="", help="Working directory inside the container.")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command.")
@click.option("--detach-keys", default=None, help="Validated; exec cannot be detached from (a warning says so).")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx, detach, interactive, tty, env, env_file, user, workdir, privileged, detach_keys, name, command):
    """Execute a command in a running container."""
    from pallet.kernel.policyopts import parse_detach_keys

    if parse_detach_keys(detach_keys) and not detach:
        click.echo("WARNING: --detach-keys: pallet cannot detach from an exec session; the keys reach the process",
                   err=True)
    from pallet.kernel import lifecycle, procs, runopts, spec as specmod
    from pallet.kernel.stdio import ConsoleSocket, pump, raw_terminal

    engine = ctx.obj
    resize_fd = _resize_fd()
    record = _running(engine, name)
    if record.status == "paused":
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")
    if workdir and not workdir.startswith("/"):
        raise UsageError(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    base = lifecycle.bundle_config(engine, record)
    process = dict(base["process"])
    process["args"] = list(command)
    process["env"] = runopts.merge_env(process.get("env") or [], runopts.parse_env(env, env_file))
    process["terminal"] = tty
    process.pop("consoleSize", None)
    size = (_sizes_sent(resize_fd) if resize_fd is not None else specmod.terminal_size()) if tty else None
    if size:
        process["consoleSize"] = size  # before the process starts, so its first `stty size` is right
    if workdir:
        process["cwd"] = workdir
    if user:
        found = specmod.resolve_user(Path(base["root"]["path"]), user)
        process["user"] = {"uid": found["uid"], "gid": found["gid"], "additionalGids": found["additional_gids"]}
    if privileged and "capabilities" in process:
        every = sorted(set().union(*[set(v) for v in process["capabilities"].values()]))
        process["capabilities"] = {k: every for k in ("bounding", "effective", "permitted")}
    runtime = lifecycle.runtime_for(engine, record)
    from pallet.kernel import events

    exec_id, shown = os.urandom(32).hex(), " ".join(command)
    events.container(engine, record, f"exec_create: {shown}", execID=exec_id)
    procs.set_subreaper()
    console = ConsoleSocket() if tty else None
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        stdin = 0 if interactive else devnull
        stdio = (devnull,) * 3 if tty else (stdin, devnull, devnull) if detach else (stdin, 1, 2)
        try:
            pid = runtime.exec(record.id, process, stdio, str(console.path) if console else None)
        except PalletError as exc:
            code = lifecycle.start_error_code(exc)
            if code is None:
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(code)
        events.container(engine, record, f"exec_start: {shown}", execID=exec_id)
        if detach:
            return
        if tty:
            master = console.receive_master()
            if resize_fd is not None:
                follow_resizes(resize_fd, master)
            with raw_terminal(master) if interactive else contextlib.nullcontext():
                pump(pid, {master: "stdout"}, None, {"stdout": 1}, stdin_to=master if interactive else None)
            os.close(master)
        code = procs.wait_for(pid)
        events.container(engine, record, "exec_die", execID=exec_id, exitCode=code)
    finally:
        os.close(devnull)
        if console:
            console.close()
    ctx.exit(code)


RESIZE_FD_ENV = "PALLET_EXEC_RESIZE_FD"


def _resize_fd() -> int | None:
    """The pipe ``pallet serve`` passes to an exec session it runs through this command, for window sizes."""
    value = os.environ.pop(RESIZE_FD_ENV, "")
    if not (value.isascii() and value.isdigit()):
        return None
    fd = int(value)
    os.set_inheritable(fd, False)  # the container's process must not get it
    return fd


def _sizes_sent(fd: int) -> dict | None:
    """The last window size already in the pipe (the server writes one before it starts us), if any."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        data = b""
    finally:
        os.set_blocking(fd, True)
    for line in reversed(data.decode(errors="replace").splitlines()):
        height, _sep, width = line.strip().partition(" ")
        if (height.isascii() and height.isdigit()) and (width.isascii() and width.isdigit()) and int(height) and int(width):
            return {"height": int(height), "width": int(width)}
    return None


def follow_resizes(fd: int, master: int) -> None:
    """Apply each ``HEIGHT WIDTH`` line read from ``fd`` to the exec's pty, until the pipe closes.

    The API's ``POST /exec/{id}/resize`` writes them: the pty master lives in this process, not in
    the server, and a pipe keeps the sizes in order (one sent before the start is applied first).
    """
    import fcntl
    import struct
    import termios
    import threading

    def follow():
        with open(fd, "rb", buffering=0) as lines:
            for line in lines:
                height, _sep, width = line.decode(errors="replace").strip().partition(" ")
                if (height.isascii() and height.isdigit()) and (width.isascii() and width.isdigit()):
                    with contextlib.suppress(OSError):
                        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(height), int(width), 0, 0))

    threading.Thread(target=follow, name="pallet-exec-resize", daemon=True).start()


# --- top and stats -------------------------------------------------------------------------

def container_pids(record) -> list[int]:
    from pallet.kernel.lifecycle import container_cgroup

    return sorted(container_cgroup(record).pids()) or ([record.pid] if record.pid else [])


@click.command("top")
@click.argument("name")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def top(engine, name, ps_args):
    """Display the running processes of a container (host ``ps`` filtered to the container's pids)."""
    for line in top_lines(_running(engine, name), list(ps_args)):
        click.echo(line)


def top_lines(record, ps_args: list[str]) -> list[str]:
    """Host ``ps`` output (``-ef`` unless ``ps_args``): its header, then the lines of the container's pids."""
    import subprocess

    pids = set(container_pids(record))
    result = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    if result.returncode != 0:
        raise PalletError(f"ps: {result.stderr.strip()}")
    lines = result.stdout.splitlines()
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise PalletError("Couldn't find PID field in ps output")
    column = header.index("PID")
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            kept.append(line)
    return kept


def cgroup_stats(record) -> dict:
    """Counters of the container's cgroup: memory_usage/limit, cpu_usage (ns), pids, blkio read/write."""
    from pallet.kernel.lifecycle import container_cgroup

    cgroup = container_cgroup(record)
    stats = {"memory_usage": 0, "memory_limit": 0, "cpu_usage": 0, "pids": 0, "blkio_read": 0, "blkio_write": 0}
    stats.update(cgroup.stats())
    from pallet.kernel.blockio import block_io

    stats["blkio_read"], stats["blkio_write"] = block_io(cgroup)
    return stats


@click.command("stats")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers (default shows just running).")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", default=None, help="Format output using a Go-style template.")
@click.argument("names", nargs=-1)
@click.pass_obj
def stats(engine, show_all, no_stream, no_trunc, fmt, names):
    """Display a live stream of container resource usage statistics (cgroup counters)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.output import emit

    store = _store(engine)
    ids = [store.get(n).id for n in names]

    def current() -> list:
        """The containers as they are now, read again for every frame: one that restarted has a new
        pid (its network counters are read through it); without names, one started meanwhile shows and
        one that stopped goes, as in Docker's live table; a removed one goes."""
        records = []
        for cid in ids or store.ids():
            with contextlib.suppress(NotFound):
                records.append(lifecycle.refresh(engine, store.load(cid)))
        return records if names or show_all else [r for r in records if r.running]

    memtotal = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    while True:
        first = {r.id: (cgroup_stats(r), time.monotonic()) for r in current()}
        time.sleep(0.5)
        rows = []
        for record in current():
            before, t0 = first.get(record.id) or (cgroup_stats(record), time.monotonic())
            now = cgroup_stats(record)
            elapsed = (time.monotonic() - t0) * 1e9
            # a restart between the two reads may start the counters again from a new cgroup
            cpu = max(0.0, 100.0 * (now["cpu_usage"] - before["cpu_usage"]) / elapsed) if record.running else 0.0
            limit = now["memory_limit"] if 0 < now["memory_limit"] < memtotal else memtotal
            rows.append({
                "Container": record.id if no_trunc else record.short_id, "ID": record.id, "Name": record.name,
                "CPUPerc": f"{cpu:.2f}%",
                "MemUsage": f"{binary_size(now['memory_usage'])} / {binary_size(limit)}",
                "MemPerc": f"{100.0 * now['memory_usage'] / limit:.2f}%" if limit else "0.00%",
                "NetIO": "{} / {}".format(*map(human_size, net_io(record.pid) if record.running else (0, 0))),
                # Docker's units: memory in binary sizes, network and block I/O in decimal ones
                "BlockIO": f"{human_size(now['blkio_read'])} / {human_size(now['blkio_write'])}",
                "PIDs": str(now["pids"]),
            })
        if not no_stream and sys.stdout.isatty():
            click.echo("\033[2J\033[H", nl=False)  # redraw in place, as Docker's live table does
        emit(rows, [("CONTAINER ID", "Container"), ("NAME", "Name"), ("CPU %", "CPUPerc"),
                    ("MEM USAGE / LIMIT", "MemUsage"), ("MEM %", "MemPerc"), ("NET I/O", "NetIO"),
                    ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")], fmt=fmt)
        if no_stream:
            return
        sys.stdout.flush()   # a pipe would otherwise get the frames in blocks of many


def net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent on the container's interfaces but loopback (its netns's /proc/net/dev)."""
    received = sent = 0
    try:
        with open(f"/proc/{pid}/net/dev") as handle:
            lines = handle.readlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _sep, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            received += int(fields[0])
            sent += int(fields[8])
    return received, sent


# --- filesystem (cp: kernel/cli/container_cp.py) -----------------------------------------------

@contextlib.contextmanager
def mounted_rootfs(engine, record):
    """The container's rootfs: its live mount when running, or a temporary ``get``/``put``."""
    engine.plugins.load("storage")
    rootfs = Path(engine.storage.get(record.id))
    try:
        yield rootfs
    finally:
        engine.storage.put(record.id)


@click.command("diff")
@click.argument("name")
@click.pass_obj
def diff(engine, name):
    """Inspect changes to files or directories on a container's filesystem."""
    record = _store(engine).get(name)
    engine.plugins.load("storage")
    for change in engine.storage.changes(record.id, record.image_top_layer):
        click.echo(f"{change.kind} {change.path}")


@click.command("export")
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT.")
@click.argument("name")
@click.pass_obj
def export(engine, output, name):
    """Export a container's filesystem as a tar archive."""
    record = _store(engine).get(name)
    if output is None and sys.stdout.isatty():
        raise PalletError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    engine.plugins.load("storage")
    target = open(output, "wb") if output else sys.stdout.buffer
    try:
        export_rootfs(engine, record, target)
    finally:
        if output:
            target.close()


def export_rootfs(engine, record, target) -> None:
    """Write the container's root filesystem to ``target`` as a tar stream; also for the API."""
    import tarfile

    unshift = engine.storage.id_unshift  # a userns-remapped home keeps files ID-shifted: export container IDs

    def owners(info):
        info.uid, info.gid = unshift(info.uid, info.gid)
        return info

    with mounted_rootfs(engine, record) as rootfs:
        with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name, recursive=True, filter=owners if unshift else None)


class _IterStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (a driver's diff) without buffering it all."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.rest = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.rest:
            try:
                self.rest = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.rest))
        buffer[:size] = self.rest[:size]
        self.rest = self.rest[size:]
        return size


@click.command("commit")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", default="", help="Author.")
@click.option("-c", "--change", multiple=True,
              help="Apply a Dockerfile instruction (CMD ENTRYPOINT ENV EXPOSE HEALTHCHECK LABEL ONBUILD SHELL STOPSIGNAL "
                   "USER VOLUME WORKDIR).")
@click.option("-p/--no-pause", "--pause/--no-pause", "pause_it", default=True, help="Pause container during commit.")
@click.argument("name")
@click.argument("repository", required=False)
@click.pass_obj
def commit(engine, message, author, change, pause_it, name, repository):
    """Create a new image from a container's changes."""
    from pallet.kernel import lifecycle

    engine.plugins.load("storage", "runtime")
    record = lifecycle.refresh(engine, _store(engine).get(name))
    store = lifecycle.image_store(engine)
    parent = store.resolve(record.image_id) if record.image_id else None
    from pallet.kernel.cli.commit_changes import apply_changes

    config = {k: record.config.get(k) for k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts",
                                                  "Volumes", "Labels", "StopSignal", "Healthcheck")}
    config = apply_changes({k: v for k, v in config.items() if v is not None}, change)
    froze = False
    if pause_it and record.status == "running":
        with contextlib.suppress(Exception):
            lifecycle.runtime_for(engine, record).pause(record.id)
            froze = True
    try:
        stream = io.BufferedReader(_IterStream(engine.storage.diff(record.id, record.image_top_layer)))
        image_id = store.commit(stream, parent, config, message or f"commit of {record.short_id}",
                                [repository] if repository else [])
    finally:
        if froze:
            lifecycle.runtime_for(engine, record).resume(record.id)
    click.echo(image_id)


def prune_containers(engine, filters, keep=lambda record: False) -> tuple[list[str], int]:
    """Remove the stopped containers matching ``filters`` (``label`` pairs) but those ``keep`` keeps;
    their ids and the bytes their read-write layers held."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.container_list import label_match

    removed, reclaimed = [], 0
    for record in _store(engine).all():
        record = lifecycle.refresh(engine, record)
        if record.running:
            continue
        if any(k == "label" and not label_match(record.labels, v) for k, v in filters) or keep(record):
            continue
        with contextlib.suppress(Exception):
            reclaimed += engine.storage.diff_size(record.id, record.image_top_layer)
        try:
            lifecycle.remove(engine, record)
            removed.append(record.id)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
    return removed, reclaimed
