"""``pallet engine start|stop|status``: the root's resident engine (``kernel/resident.py``, ``docs/perf.md``)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import click

from pallet.kernel.errors import PalletError

START_TIMEOUT = 60  # seconds: the engine imports every command module and plugin before it says ready


@click.group("engine")
def engine():
    """Control the resident engine that makes commands start fast."""


@engine.command("start")
def start():
    """Start the engine for this run root (nothing to do if one is running)."""
    from pallet.kernel.resident import status

    config = click.get_current_context().obj
    run_root = config.run_root
    state = status(run_root)
    if state["running"]:
        click.echo(f"engine already running (pid {state['pid']}, socket {state['socket']})")
        return
    run_root.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    with open(run_root / "engine.log", "ab") as log:
        # A session of its own, and -P as the direct path's (kernel/launcher.py): nothing imported from the cwd.
        proc = subprocess.Popen([sys.executable, "-P", "-m", "pallet.kernel.resident", f"--root={config.root}",
                                 str(run_root), str(write_end)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_end,),
                                start_new_session=True)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], START_TIMEOUT)
        said = os.read(read_end, 64) if ready else b""
    finally:
        os.close(read_end)
    if not said.startswith(b"ready"):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise PalletError(f"the engine did not start; see {run_root / 'engine.log'}")
    click.echo(f"engine started (pid {proc.pid}, socket {run_root / 'engine.sock'})")


def start_beside(run_root, root=None) -> subprocess.Popen | None:
    """An engine for ``run_root`` that ends with this process (``pallet serve`` runs one while it runs),
    unless one runs already; not waited for (it preloads for about a second, and until then commands and
    log pumps take the direct path)."""
    from pallet.kernel.resident import status

    if status(run_root)["running"]:
        return None
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / "engine.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-P", "-m", "pallet.kernel.resident",
                                 *([f"--root={root}"] if root else []), str(run_root), "-", str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def stop_beside(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@engine.command("stop")
def stop():
    """Stop the engine; commands it already took finish on their own."""
    from pallet.kernel.resident import status

    run_root = click.get_current_context().obj.run_root
    state = status(run_root)
    if not state["running"] or not state["pid"]:
        click.echo("engine not running")
        return
    try:
        os.kill(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while status(run_root)["running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    if status(run_root)["running"]:
        raise PalletError(f"the engine (pid {state['pid']}) did not stop")
    click.echo("engine stopped")


@engine.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
def status_cmd(fmt):
    """Show whether the engine runs, its pid and socket."""
    from pallet.kernel.resident import status

    state = status(click.get_current_context().obj.run_root)
    if fmt == "json":
        click.echo(json.dumps(state))
    elif state["running"]:
        click.echo(f"running (pid {state['pid']}, socket {state['socket']})")
    else:
        click.echo(f"not running (socket {state['socket']})")


@engine.command("after-exit", hidden=True)
@click.argument("params")
@click.argument("code", type=int)
def after_exit_cmd(params, code):
    """(internal) Record a detached container's exit for its log pump, which found this engine running:
    here pallet is imported already (the pump would spend ~0.1 s importing it; ``kernel/logpump.py``)."""
    from pallet.kernel import faults
    from pallet.kernel.exit_handler import after_exit

    faults.point("exit.by-engine")
    after_exit(params, code)
