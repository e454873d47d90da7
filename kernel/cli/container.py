"""Container commands: ``run``, ``create``, ``start``, ``ps``, ``stop``, ``rm``, ``logs``, ``exec`` … (Docker's flags)."""

from __future__ import annotations

import json
import sys
import time

import click

from kernel.cli.output import emit, format_option
from kernel.errors import Conflict, PalletError, UsageError

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
                          'default_network in the config, else "bridge" when a bridge driver is implemented, '
                          'else "none".'),
        click.option("-p", "--publish", multiple=True, metavar="[IP:][HOST:]CTR[/PROTO]",
                     help="Publish a container's port(s) to the host."),
        click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports."),
        click.option("--security-opt", multiple=True, help="Security options (seccomp=…, no-new-privileges …)."),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities."),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities."),
        click.option("--privileged", is_flag=True, help="Give extended privileges to this container."),
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_request(image, command, opts):
    from kernel import runopts
    from kernel.lifecycle import CreateRequest

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
    }
    if opts["stop_signal"] is not None:
        runopts.parse_signal(opts["stop_signal"])
    request = CreateRequest(
        image=image, command=list(command), name=opts["name"], entrypoint=opts["entrypoint"],
        env=runopts.parse_env(opts["env"], opts["env_file"]), workdir=opts["workdir"], user=opts["user"],
        hostname=opts["hostname"], tty=opts["tty"], stdin_open=opts["interactive"],
        labels=runopts.parse_labels(opts["label"]), network=opts["network"], port_specs=list(opts["publish"]),
        publish_all=opts["publish_all"], host_config=host_config,
    )
    if opts["workdir"] and not opts["workdir"].startswith("/"):
        raise UsageError(f"the working directory '{opts['workdir']}' is invalid, it needs to be an absolute path")
    return request


def _create(engine, image, command, opts):
    from kernel import lifecycle

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

    Without --network the container gets "bridge" when a bridge network driver is implemented,
    else "none" (a private network namespace with only lo).
    """
    from kernel import lifecycle, monitor

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
    from kernel import lifecycle, monitor

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
    from kernel.containers import ContainerStore
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
    from kernel import lifecycle
    from kernel.runopts import parse_signal

    number = parse_signal(sig)
    _each(_engine(engine), containers, lambda r: lifecycle.stop(engine, r, timeout, number))


@container.command("restart")
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def restart(engine, timeout, containers):
    """Restart one or more containers."""
    from kernel import lifecycle, monitor

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
    from kernel import lifecycle
    from kernel.runopts import parse_signal

    number = parse_signal(sig)

    def send(record):
        record = lifecycle.refresh(engine, record)
        if not record.running:
            raise Conflict(f"Cannot kill container: {record.name}: Container {record.id} is not running")
        lifecycle.kill(engine, record, number)

    _each(_engine(engine), containers, send)


def _freeze(engine, names, pause: bool):
    from kernel import lifecycle

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
    from kernel import lifecycle

    _each(_engine(engine), containers, lambda r: lifecycle.remove(engine, r, force=force, volumes=volumes))


# --- listing -------------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    seconds = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def status_text(record, now: float) -> str:
    if record.status == "running":
        return f"Up {human_duration(now - record.started_at)}"
    if record.status == "paused":
        return f"Up {human_duration(now - record.started_at)} (Paused)"
    if record.status == "exited":
        return f"Exited ({record.exit_code}) {human_duration(now - record.finished_at)} ago"
    return record.status.capitalize()


def ports_text(record) -> str:
    items = []
    for port, bindings in sorted(record.port_bindings.items()):
        for binding in bindings or [{}]:
            if binding.get("HostPort"):
                items.append(f"{binding.get('HostIp') or '0.0.0.0'}:{binding['HostPort']}->{port}")
            else:
                items.append(port)
    return ", ".join(items)


def ps_row(record, now: float, no_trunc: bool) -> dict:
    command = " ".join((record.config.get("Entrypoint") or []) + (record.config.get("Cmd") or []))
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return {
        "ID": record.id if no_trunc else record.short_id,
        "Image": record.image_ref,
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(record.created)),
        "RunningFor": human_duration(now - record.created) + " ago",
        "Status": status_text(record, now),
        "State": record.status,
        "Ports": ports_text(record),
        "Names": record.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(record.labels.items())),
        "Networks": record.network_mode,
        "Mounts": ",".join(m.get("Source") or m["Target"] for m in record.host_config.get("Mounts") or []),
    }


def _matches(record, filters: list[tuple[str, str]]) -> bool:
    groups: dict[str, list[str]] = {}
    for key, value in filters:
        groups.setdefault(key, []).append(value)
    for key, values in groups.items():
        if key == "id":
            ok = any(record.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(v.lstrip("/") in record.name for v in values)
        elif key == "label":
            ok = all(_label_match(record.labels, v) for v in values)
        elif key == "status":
            ok = record.status in values
        elif key == "exited":
            ok = record.status == "exited" and str(record.exit_code) in values
        elif key == "ancestor":
            ok = any(v in (record.image_ref, record.image_id) or record.image_id.removeprefix("sha256:").startswith(v)
                     for v in values)
        elif key == "network":
            ok = record.network_mode in values
        else:
            raise UsageError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _label_match(labels: dict, want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _parse_filters(values) -> list[tuple[str, str]]:
    result = []
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad format of filter (expected name=value): {item}")
        result.append((key, value))
    return result


PS_COLUMNS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
              ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]


@container.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers (default shows just running).")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, label, status, exited, ancestor).")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers.")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@format_option
@click.pass_obj
def ls(engine, show_all, quiet, filters, no_trunc, last, latest, fmt):
    """List containers."""
    from kernel import lifecycle

    wanted = _parse_filters(filters)
    now = time.time()
    records = sorted((lifecycle.refresh(engine, r) for r in _store(engine).all()), key=lambda r: -r.created)
    if latest:
        last = 1
    if not show_all and last < 0 and not any(k in ("status", "exited") for k, _ in wanted):
        records = [r for r in records if r.running]
    records = [r for r in records if _matches(r, wanted)]
    if last >= 0:
        records = records[:last]
    rows = [ps_row(r, now, no_trunc) for r in records]
    emit(rows, PS_COLUMNS, fmt=fmt, quiet=quiet, quiet_field="ID")


container.add_command(ls, "ps")
container.add_command(ls, "list")


@container.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.argument("name")
@click.pass_obj
def logs(engine, follow, tail, timestamps, name):
    """Fetch the logs of a container."""
    from kernel import lifecycle
    from kernel.cli.container_ops import show_logs

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
    from kernel import lifecycle

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


@container.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format the output using a Go-style template.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(engine, fmt, size, names):
    """Display detailed information on one or more containers."""
    _inspect(engine, names, fmt, containers_only=True)


def _inspect(engine, names, fmt, containers_only: bool):
    from kernel import lifecycle
    from kernel.cli.output import render_template
    from kernel.errors import NotFound

    results, missing = [], []
    for name in names:
        try:
            results.append(lifecycle.inspect(engine, lifecycle.refresh(engine, _store(engine).get(name))))
            continue
        except NotFound as exc:
            error = exc
        if not containers_only:
            try:
                results.append(_inspect_image(engine, name))
                continue
            except (NotFound, ImportError, AttributeError):
                error = NotFound(f"No such object: {name}")
        missing.append(error)
    if fmt:
        for item in results:
            click.echo(render_template(fmt, item))
    else:
        click.echo(json.dumps(results, indent=4))
    for error in missing:
        click.echo(f"Error: {error}", err=True)
    if missing:
        raise click.exceptions.Exit(1)


def _inspect_image(engine, name):
    from kernel.images import ImageStore

    store = ImageStore(engine)
    record = store.resolve(name)
    if hasattr(store, "inspect"):
        return store.inspect(record)
    return {"Id": record.id, "RepoTags": list(record.repo_tags), "Created": record.created, "Size": record.size,
            "Config": (record.config or {}).get("config") or {}, "RootFS": {"Type": "layers", "Layers": record.layers}}


@click.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format the output using a Go-style template.")
@click.option("--type", "kind", type=click.Choice(["container", "image"]), default=None, help="Only this kind.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect_any(engine, fmt, kind, names):
    """Return low-level information on containers or images."""
    if kind == "image":
        click.echo(json.dumps([_inspect_image(engine, n) for n in names], indent=4))
        return
    _inspect(engine, names, fmt, containers_only=kind == "container")


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
    from kernel.cli.container_ops import prune_containers

    if not force and not click.confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"):
        return
    removed, reclaimed = prune_containers(_engine(engine), _parse_filters(filters))
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo()
    click.echo(f"Total reclaimed space: {reclaimed}B")


from kernel.cli.container_ops import commit, cp, diff, exec_, export, stats, top  # noqa: E402  (same group)

for _command in (commit, cp, diff, export, stats, top):
    container.add_command(_command)
container.add_command(exec_, "exec")
container.add_command(inspect)
