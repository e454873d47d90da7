"""Container commands: ``run``, ``create``, ``start``, ``ps``, ``stop``, ``rm``, ``logs``, ``exec`` … (Docker's flags)."""

from __future__ import annotations

import sys
import time

import click

from pallet.kernel.errors import Conflict, PalletError, UsageError

from pallet.kernel.cli.container_flags import RUN_SETTINGS, EngineCommand, RunCommand, build_request, create_options, run_only_options


@click.group("container")
def container():
    """Manage containers."""


def _engine(ctx_obj, groups=("storage", "security", "runtime", "logging")):
    """Engage the plugin groups every container command uses, so their lifecycle hooks observe it
    (a plugin is imported when its driver or a hook it implements is used: ``PluginManager.engage``).

    Network plugins load only for containers on a network that needs them (not none/host),
    which keeps ``run --network none`` start-up short.
    """
    ctx_obj.plugins.engage(*groups)
    return ctx_obj


def _create(engine, image, command, opts, detach: bool = False):
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.container_flags import write_cidfile

    pod = None
    if opts.get("pod"):
        from pallet.kernel import pods

        pod = pods.PodStore(engine).get(opts["pod"])
        pods.check_infra(engine, pod)
        opts = pods.member_options(pod, opts)
    request = build_request(image, command, opts, detach)
    if pod is not None and "uts" in pod.share:
        request.hostname = pod.hostname  # /etc/hostname of every member names the pod, whose UTS namespace it joins
    if opts["secret"]:
        from pallet.kernel.secrets import resolve_references

        request.host_config["Secrets"] = resolve_references(engine, opts["secret"])
    if opts["use_api_socket"]:
        from pallet.kernel.cli.container_flags import add_api_socket

        add_api_socket(engine, request)
    record = lifecycle.create(engine, request)
    write_cidfile(request.host_config.get("ContainerIDFile") or "", record.id)
    return record


@container.command("create", cls=RunCommand, context_settings=RUN_SETTINGS)
@create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(engine, image, command, **opts):
    """Create a new container (IMAGE [COMMAND] [ARG...])."""
    record = _create(_engine(engine), image, command, opts)
    click.echo(record.id)


@container.command("run", cls=RunCommand, context_settings=RUN_SETTINGS)
@create_options
@run_only_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, image, command, detach, detach_keys, sig_proxy, **opts):
    """Create and run a new container from an image (IMAGE [COMMAND] [ARG...]).

    Without --network the container gets [containers] default_network from the config, else
    "bridge" when a plugin registers a bridge network driver, else "none"
    (a private network namespace with only lo).
    """
    from pallet.kernel import lifecycle, monitor

    engine = _engine(ctx.obj)
    if opts["tty"] and opts["interactive"] and not detach and not sys.stdin.isatty():
        raise PalletError("the input device is not a TTY")
    if not detach and not (opts["tty"] and opts["interactive"]):   # this process starts the container
        from pallet.kernel import cgroups

        cgroups.keep_migrations_warm()   # its first cgroup move's wait overlaps create and prepare
    opts["detach_keys"] = detach_keys
    record = _create(engine, image, command, opts, detach)
    try:
        bundle = lifecycle.prepare(engine, record)
    except BaseException:
        if opts["auto_remove"]:
            lifecycle.remove(engine, record)
        raise
    if detach:
        monitor.spawn(engine, record, bundle)
        click.echo(record.id)
        return 0
    if opts["tty"] and opts["interactive"]:
        # Under a detached monitor from the start, so that the detach keys can leave it running.
        from pallet.kernel import attach

        monitor.spawn(engine, record, bundle, attach_first=True)
        streams = [s for s in ("stdout", "stderr") if record.config.get(f"Attach{s.title()}", True)]
        code = attach.attach(_store(engine).run_dir(record.id), interactive=True, detach_keys=detach_keys,
                             streams=streams)
        ctx.exit(0 if code is None else code)
    code = monitor.run_attached(engine, record, bundle, interactive=opts["interactive"],
                                streams={"stdout": record.config.get("AttachStdout", True),
                                         "stderr": record.config.get("AttachStderr", True)},
                                sig_proxy=sig_proxy)
    ctx.exit(code)


@container.command("start", cls=EngineCommand)
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching (ctrl-p,ctrl-q).")
@click.option("--checkpoint", default=None, help="Restore from this checkpoint (refused: no CRIU here).")
@click.option("--checkpoint-dir", default=None, help="Use a custom checkpoint storage directory (refused).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx, attach, interactive, detach_keys, checkpoint, checkpoint_dir, containers):
    """Start one or more stopped containers."""
    from pallet.kernel import lifecycle, monitor
    from pallet.kernel.policyopts import parse_detach_keys

    if checkpoint or checkpoint_dir:
        raise UsageError("--checkpoint: pallet has no checkpoint/restore (CRIU) support")
    parse_detach_keys(detach_keys)
    engine = _engine(ctx.obj)
    code = 0
    for name in containers:
        record = lifecycle.refresh(engine, _store(engine).get(name))
        if record.running:
            if not attach:
                click.echo(name)
            continue
        from pallet.kernel import restart

        restart.cancel_pending(engine, record)
        record = _store(engine).update(record.id, restart_count=0, restart_delay=0.0)  # Docker's: a user start resets
        bundle = lifecycle.prepare(engine, record)
        if (attach or interactive) and record.config.get("Tty") and interactive:
            from pallet.kernel import attach as attaching

            monitor.spawn(engine, record, bundle, attach_first=True)  # detachable, as run -it
            code = attaching.attach(_store(engine).run_dir(record.id), interactive=True, detach_keys=detach_keys)
            code = 0 if code is None else code
        elif attach or interactive:
            code = monitor.run_attached(engine, record, bundle, interactive=interactive)
        else:
            monitor.spawn(engine, record, bundle)
            click.echo(name)
    ctx.exit(code)


@container.command("attach", cls=RunCommand)  # Go booleans: --sig-proxy=false, as Docker
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching (ctrl-p,ctrl-q).")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process.")
@click.argument("name")
@click.pass_context
def attach_(ctx, detach_keys, no_stdin, sig_proxy, name):
    """Attach local standard input, output, and error streams to a running container."""
    import signal

    from pallet.kernel import attach, lifecycle
    from pallet.kernel.monitor import FORWARDED
    from pallet.kernel.policyopts import parse_detach_keys

    parse_detach_keys(detach_keys)
    engine = _engine(ctx.obj)
    record = lifecycle.refresh(engine, _store(engine).get(name))
    if record.status == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    if not record.running:
        raise Conflict("You cannot attach to a stopped container, start it first")
    if record.config.get("Tty") and not no_stdin and not sys.stdin.isatty():
        raise PalletError("the input device is not a TTY")
    if sig_proxy and not record.config.get("Tty"):
        for signum in FORWARDED:
            signal.signal(signum, lambda number, _frame: lifecycle.kill(engine, record, number))
    code = attach.attach(_store(engine).run_dir(record.id), interactive=not no_stdin and record.config.get("OpenStdin"),
                         detach_keys=detach_keys)
    ctx.exit(0 if code is None else code)


def _store(engine):
    from pallet.kernel.containers import ContainerStore
    return ContainerStore(engine)


def _each(engine, names, action) -> None:
    """Apply ``action`` to every named container; report each failure as Docker does, fail at the end."""
    failed = []
    for name in names:
        try:
            action(_store(engine).get(name))
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed.append(exc)
    if failed:
        raise click.exceptions.Exit(1)


@container.command("stop")
@click.option("-t", "--timeout", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.option("-s", "--signal", "sig", default=None, help="Signal to send (default: the container's StopSignal).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def stop(engine, timeout, sig, containers):
    """Stop one or more running containers."""
    from pallet.kernel import lifecycle
    from pallet.kernel.runopts import parse_signal

    number = parse_signal(sig)
    _each(_engine(engine), containers, lambda r: lifecycle.stop(engine, r, timeout, number))


@container.command("restart")
@click.option("-t", "--timeout", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.option("-s", "--signal", "sig", default=None, help="Signal to stop with (default: the container's StopSignal).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def restart(engine, timeout, sig, containers):
    """Restart one or more containers."""
    from pallet.kernel import lifecycle, monitor
    from pallet.kernel.runopts import parse_signal

    number = parse_signal(sig)

    def again(record):
        record = lifecycle.stop(engine, record, timeout, number)
        record = _store(engine).update(record.id, restart_count=record.restart_count + 1)
        monitor.spawn(engine, record, lifecycle.prepare(engine, record))
        events.container(engine, record, "restart")

    from pallet.kernel import events

    _each(_engine(engine), containers, again)


@container.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def kill(engine, sig, containers):
    """Kill one or more running containers."""
    from pallet.kernel import lifecycle
    from pallet.kernel.runopts import parse_signal

    number = parse_signal(sig)

    def send(record):
        from pallet.kernel import restart

        record = lifecycle.refresh(engine, record)
        if not record.running:
            raise Conflict(f"Cannot kill container: {record.name}: Container {record.id} is not running")
        restart.note_user_stop(engine, record, number)
        lifecycle.kill(engine, record, number)

    _each(_engine(engine), containers, send)


def freeze(engine, record, pause: bool) -> None:
    """Pause (cgroup freezer) or unpause a running container, refusing as Docker does; also for the API."""
    from pallet.kernel import lifecycle

    record = lifecycle.refresh(engine, record)
    if not record.running:
        raise Conflict(f"Container {record.id} is not running")
    if pause and record.status == "paused":
        raise Conflict(f"Container {record.id} is already paused")
    if not pause and record.status != "paused":
        raise Conflict(f"Container {record.id} is not paused")
    from pallet.kernel import events

    runtime = lifecycle.runtime_for(engine, record)
    (runtime.pause if pause else runtime.resume)(record.id)
    _store(engine).update(record.id, status="paused" if pause else "running")
    events.container(engine, record, "pause" if pause else "unpause")


def _freeze(engine, names, pause: bool):
    engine = _engine(engine)
    _each(engine, names, lambda record: freeze(engine, record, pause))


@container.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def pause(engine, containers):
    """Pause all processes within one or more containers (cgroup freezer)."""
    _freeze(engine, containers, True)


@container.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def unpause(engine, containers):
    """Unpause all processes within one or more containers."""
    _freeze(engine, containers, False)


@container.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL).")
@click.option("-l", "--link", "link", is_flag=True, help="Remove the specified legacy link (PARENT/ALIAS), not a container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def rm(engine, force, link, volumes, containers):
    """Remove one or more containers."""
    from pallet.kernel import lifecycle
    from pallet.kernel.errors import NotFound

    if link:
        from pallet.kernel.runlinks import remove_link

        failed = False
        for name in containers:
            try:
                remove_link(_store(engine), name)
                click.echo(name)
            except PalletError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed = True
        if failed:
            raise click.exceptions.Exit(1)
        return
    if force:  # as Docker: -f of a container that is not there is not an error
        store = _store(engine)
        present = []
        for name in containers:
            try:
                store.get(name)
                present.append(name)
            except NotFound:
                continue
        containers = present
    _each(_engine(engine), containers, lambda r: lifecycle.remove(engine, r, force=force, volumes=volumes))


@container.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", default=None, help="Show logs since a timestamp (2013-01-02T13:23:37Z) or relative (42m).")
@click.option("--until", default=None, help="Show logs before a timestamp or relative time (42m).")
@click.option("--details", is_flag=True, help="Show extra details provided to logs (none are configured: as is).")
@click.argument("name")
@click.pass_obj
def logs(engine, follow, tail, timestamps, since, until, details, name):
    """Fetch the logs of a container."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.container_ops import show_logs
    from pallet.kernel.policyopts import parse_timestamp

    store = _store(engine)
    record = lifecycle.refresh(engine, store.get(name))
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise UsageError(f'invalid argument "{tail}" for "-n, --tail" flag')
    window = (parse_timestamp(since, "--since") if since else None, parse_timestamp(until, "--until") if until else None)
    show_logs(engine, record, follow, None if tail == "all" or int(tail) < 0 else int(tail), timestamps, window)


@container.command("wait", cls=EngineCommand)
@click.option("--condition", type=click.Choice(["not-running", "next-exit", "removed"]), default=None,
              help="Wait for: not-running (at once if it does not run), next-exit, removed.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(engine, containers, condition):
    """Block until one or more containers stop, then print their exit codes."""
    from pallet.kernel import lifecycle

    if condition is not None:
        from pallet.kernel.boot import wait_for

        records = [_store(engine).get(name) for name in containers]  # all named ones must exist first
        for record in records:
            click.echo(wait_for(engine, record, condition))
        return
    for name in containers:
        record = _store(engine).get(name)
        while True:
            record = lifecycle.refresh(engine, record)
            if not record.running and record.status != "created":
                break
            if record.status == "created":
                time.sleep(0.1)
            else:
                lifecycle.wait_stopped(engine, record, 3600)
            try:
                record = _store(engine).load(record.id)
            except PalletError:
                break
        click.echo(record.exit_code)


@container.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.pass_obj
def rename(engine, name, new_name):
    """Rename a container."""
    store = _store(engine)
    store.rename(store.get(name), new_name)


@container.command("port")
@click.argument("name")
@click.argument("private_port", required=False)
@click.pass_obj
def port(engine, name, private_port):
    """List port mappings or a specific mapping for the container."""
    record = _store(engine).get(name)
    ports = record.network.get("ports") or record.port_bindings
    if private_port and "/" not in private_port:
        private_port += "/tcp"
    found = False
    for key, bindings in sorted(ports.items()):
        if private_port and key != private_port:
            continue
        for binding in bindings or []:
            if binding.get("HostPort"):
                found = True
                prefix = "" if private_port else f"{key} -> "
                click.echo(f"{prefix}{binding.get('HostIp') or '0.0.0.0'}:{binding['HostPort']}")
    if private_port and not found:
        raise PalletError(f"No public port '{private_port}' published for {record.name}")


@container.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (label=…).")
@click.pass_obj
def prune(engine, force, filters):
    """Remove all stopped containers."""
    from pallet.kernel.cli.container_ops import prune_containers
    from pallet.kernel.cli.container_list import parse_filters

    if not force and not click.confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"):
        return
    removed, reclaimed = prune_containers(_engine(engine), parse_filters(filters))
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo()
    click.echo(f"Total reclaimed space: {reclaimed}B")


# Commands that live in sibling modules join the same group (and stay importable by name for COMMANDS).
from pallet.kernel.cli.container_list import inspect, inspect_any, ls  # noqa: E402,F401
from pallet.kernel.cli.container_cp import cp  # noqa: E402
from pallet.kernel.cli.container_ops import commit, diff, exec_, export, stats, top  # noqa: E402
from pallet.kernel.cli.container_update import update  # noqa: E402

for _command in (commit, cp, diff, export, stats, top, inspect, update):
    container.add_command(_command)
container.add_command(exec_, "exec")
container.add_command(ls, "ls")
container.add_command(ls, "ps")
container.add_command(ls, "list")
