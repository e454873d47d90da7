"""Container commands: ``run``, ``create``, ``start``, ``ps``, ``stop``, ``rm``, ``logs``, ``exec`` … (Docker's flags)."""

from __future__ import annotations

import sys
import time

import click

from pallet.kernel.cli.trust import trust_options
from pallet.kernel.errors import Conflict, PalletError, UsageError

# -h is Docker's --hostname for run/create, so only --help shows help there.
RUN_SETTINGS = {"help_option_names": ["--help"], "allow_interspersed_args": False}


@click.group("container")
def container():
    """Manage containers."""


def _engine(ctx_obj, groups=("storage", "security", "runtime")):
    """Load the plugin groups every container command uses, so their lifecycle hooks observe it.

    Network plugins load only for containers on a network that needs them (not none/host),
    which keeps ``run --network none`` start-up short.
    """
    ctx_obj.plugins.load(*groups)
    return ctx_obj


def create_options(func):
    """The flags ``create`` and ``run`` share, named as Docker names them."""
    options = [
        click.option("--name", default="", help="Assign a name to the container."),
        click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set environment variables."),
        click.option("--env-file", multiple=True, metavar="FILE", help="Read in a file of environment variables."),
        click.option("-w", "--workdir", default="", help="Working directory inside the container."),
        click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])."),
        click.option("-h", "--hostname", default="", help="Container host name (default: the id's first 12 chars)."),
        click.option("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image."),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option("-v", "--volume", multiple=True, metavar="SRC:DST[:OPTS]", help="Bind mount a volume."),
        click.option("--mount", "mounts", multiple=True, metavar="SPEC",
                     help="Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…[,readonly])."),
        click.option("--tmpfs", multiple=True, metavar="PATH[:OPTS]", help="Mount a tmpfs directory."),
        click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set metadata on a container."),
        click.option("--stop-signal", default=None, help="Signal to stop the container (default SIGTERM)."),
        click.option("--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container."),
        click.option("--network", "--net", "network", default="",
                     help='Connect to a network: none, host, bridge or a network name. Default: [containers] '
                          'default_network in the config, else "bridge" when a plugin registers a bridge driver, '
                          'else "none".'),
        click.option("--ip", default="", metavar="IPV4", help="IPv4 address on the (user-defined) network."),
        click.option("--mac-address", default="", metavar="MAC", help="Container MAC address (e.g. 92:d0:c6:0a:29:33)."),
        click.option("--network-alias", multiple=True, metavar="ALIAS", help="Add a network-scoped alias for the container."),
        click.option("-p", "--publish", multiple=True, metavar="[IP:][HOST:]CTR[/PROTO]",
                     help="Publish a container's port(s) to the host."),
        click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports."),
        click.option("--security-opt", multiple=True, help="Security options (seccomp=…, no-new-privileges …)."),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities."),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities."),
        click.option("--privileged", is_flag=True, help="Give extended privileges to this container."),
        click.option("--userns", default="", metavar="host", help="User namespace: \"host\" opts out of userns_remap."),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only."),
        click.option("--runtime", default="pallet", help="Runtime to use (pallet, runc, crun)."),
        click.option("-m", "--memory", default=None, help="Memory limit (e.g. 32m, 1g)."),
        click.option("--memory-swap", default=None, help="Memory plus swap limit; -1 for unlimited swap."),
        click.option("--cpus", default=None, help="Number of CPUs."),
        click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)."),
        click.option("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)."),
        click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (-1 unlimited)."),
        click.option("--blkio-weight", type=int, default=None, help="Block IO weight, 10 to 1000."),
        click.option("--ulimit", multiple=True, metavar="NAME=SOFT[:HARD]", help="Ulimit options."),
        click.option("--oom-score-adj", type=int, default=None, help="Tune host's OOM preferences (-1000 to 1000)."),
        click.option("--rm", "auto_remove", is_flag=True, help="Automatically remove the container when it exits."),
        click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
                     show_default=True, help="Pull the image before running."),
    ]
    for option in reversed(options):
        func = option(func)
    return trust_options(func)


def build_request(image, command, opts):
    from pallet.kernel import runopts
    from pallet.kernel.lifecycle import CreateRequest

    mounts = [runopts.parse_volume(v) for v in opts["volume"]] + [runopts.parse_mount(m) for m in opts["mounts"]]
    for mount in mounts:
        if mount["Type"] == "bind" and not mount.get("CreateSource"):
            import os
            if not os.path.exists(mount["Source"]):
                raise UsageError(f'invalid mount config for type "bind": bind source path does not exist: {mount["Source"]}')
    targets = [m["Target"] for m in mounts] + [runopts.parse_tmpfs(t)[0] for t in opts["tmpfs"]]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise UsageError(f"Duplicate mount point: {duplicate}")
    pids = opts["pids_limit"]
    oom = opts["oom_score_adj"]
    if oom is not None and not -1000 <= oom <= 1000:
        raise UsageError(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    host_config = {
        "Binds": list(opts["volume"]),
        "Mounts": mounts,
        "Tmpfs": dict(runopts.parse_tmpfs(t) for t in opts["tmpfs"]),
        "AutoRemove": opts["auto_remove"],
        "Privileged": opts["privileged"],
        "ReadonlyRootfs": opts["read_only"],
        "CapAdd": list(opts["cap_add"]),
        "CapDrop": list(opts["cap_drop"]),
        "SecurityOpt": list(opts["security_opt"]),
        "UsernsMode": opts["userns"],
        "Runtime": opts["runtime"],
        "Memory": runopts.parse_memory(opts["memory"]) or 0,
        "MemorySwap": runopts.parse_memory_swap(opts["memory_swap"]) or 0,
        "NanoCpus": runopts.parse_cpus(opts["cpus"]) or 0,
        "CpuShares": opts["cpu_shares"] or 0,
        "CpusetCpus": runopts.parse_cpuset(opts["cpuset_cpus"]) or "",
        "PidsLimit": pids if pids and pids > 0 else None,
        "BlkioWeight": runopts.parse_blkio_weight(opts["blkio_weight"]) or 0,
        "Ulimits": [runopts.parse_ulimit(u) for u in opts["ulimit"]],
        "OomScoreAdj": oom or 0,
        "StopSignal": opts["stop_signal"],
        "StopTimeout": opts["stop_timeout"],
        "IPv4Address": runopts.parse_ipv4(opts["ip"]),
        "MacAddress": runopts.parse_mac(opts["mac_address"]),
        "NetworkAliases": list(opts["network_alias"]),
    }
    if opts["stop_signal"] is not None:
        runopts.parse_signal(opts["stop_signal"])
    request = CreateRequest(
        image=image, command=list(command), name=opts["name"], entrypoint=opts["entrypoint"],
        env=runopts.parse_env(opts["env"], opts["env_file"]), workdir=opts["workdir"], user=opts["user"],
        hostname=opts["hostname"], tty=opts["tty"], stdin_open=opts["interactive"],
        labels=runopts.parse_labels(opts["label"]), network=opts["network"], port_specs=list(opts["publish"]),
        publish_all=opts["publish_all"], pull=opts["pull"], host_config=host_config,
    )
    if opts["workdir"] and not opts["workdir"].startswith("/"):
        raise UsageError(f"the working directory '{opts['workdir']}' is invalid, it needs to be an absolute path")
    return request


def _create(engine, image, command, opts):
    from pallet.kernel import lifecycle

    return lifecycle.create(engine, build_request(image, command, opts))


@container.command("create", context_settings=RUN_SETTINGS)
@create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(engine, image, command, **opts):
    """Create a new container (IMAGE [COMMAND] [ARG...])."""
    record = _create(_engine(engine), image, command, opts)
    click.echo(record.id)


@container.command("run", context_settings=RUN_SETTINGS)
@create_options
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, image, command, detach, **opts):
    """Create and run a new container from an image (IMAGE [COMMAND] [ARG...]).

    Without --network the container gets [containers] default_network from the config, else
    "bridge" when a plugin registers a bridge network driver, else "none"
    (a private network namespace with only lo).
    """
    from pallet.kernel import lifecycle, monitor

    engine = _engine(ctx.obj)
    if opts["tty"] and opts["interactive"] and not detach and not sys.stdin.isatty():
        raise PalletError("the input device is not a TTY")
    record = _create(engine, image, command, opts)
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
    code = monitor.run_attached(engine, record, bundle, interactive=opts["interactive"])
    ctx.exit(code)


@container.command("start")
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx, attach, interactive, containers):
    """Start one or more stopped containers."""
    from pallet.kernel import lifecycle, monitor

    engine = _engine(ctx.obj)
    code = 0
    for name in containers:
        record = lifecycle.refresh(engine, _store(engine).get(name))
        if record.running:
            if not attach:
                click.echo(name)
            continue
        bundle = lifecycle.prepare(engine, record)
        if attach or interactive:
            code = monitor.run_attached(engine, record, bundle, interactive=interactive)
        else:
            monitor.spawn(engine, record, bundle)
            click.echo(name)
    ctx.exit(code)


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
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
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
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def restart(engine, timeout, containers):
    """Restart one or more containers."""
    from pallet.kernel import lifecycle, monitor

    def again(record):
        record = lifecycle.stop(engine, record, timeout)
        record = _store(engine).update(record.id, restart_count=record.restart_count + 1)
        monitor.spawn(engine, record, lifecycle.prepare(engine, record))

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
        record = lifecycle.refresh(engine, record)
        if not record.running:
            raise Conflict(f"Cannot kill container: {record.name}: Container {record.id} is not running")
        lifecycle.kill(engine, record, number)

    _each(_engine(engine), containers, send)


def _freeze(engine, names, pause: bool):
    from pallet.kernel import lifecycle

    def act(record):
        record = lifecycle.refresh(engine, record)
        if not record.running:
            raise Conflict(f"Container {record.id} is not running")
        if pause and record.status == "paused":
            raise Conflict(f"Container {record.id} is already paused")
        if not pause and record.status != "paused":
            raise Conflict(f"Container {record.id} is not paused")
        runtime = lifecycle.runtime_for(engine, record)
        (runtime.pause if pause else runtime.resume)(record.id)
        _store(engine).update(record.id, status="paused" if pause else "running")

    _each(_engine(engine), names, act)


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
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def rm(engine, force, volumes, containers):
    """Remove one or more containers."""
    from pallet.kernel import lifecycle

    _each(_engine(engine), containers, lambda r: lifecycle.remove(engine, r, force=force, volumes=volumes))


@container.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.argument("name")
@click.pass_obj
def logs(engine, follow, tail, timestamps, name):
    """Fetch the logs of a container."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.container_ops import show_logs

    store = _store(engine)
    record = lifecycle.refresh(engine, store.get(name))
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise UsageError(f'invalid argument "{tail}" for "-n, --tail" flag')
    show_logs(engine, record, follow, None if tail == "all" or int(tail) < 0 else int(tail), timestamps)


@container.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(engine, containers):
    """Block until one or more containers stop, then print their exit codes."""
    from pallet.kernel import lifecycle

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
from pallet.kernel.cli.container_ops import commit, cp, diff, exec_, export, stats, top  # noqa: E402

for _command in (commit, cp, diff, export, stats, top, inspect):
    container.add_command(_command)
container.add_command(exec_, "exec")
container.add_command(ls, "ls")
container.add_command(ls, "ps")
container.add_command(ls, "list")
