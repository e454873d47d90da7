"""``pallet pod``: groups of containers sharing an infra container's namespaces (kernel/pods.py)."""

from __future__ import annotations

import json
import time

import click

from pallet.kernel.errors import NotFound, PalletError, UsageError


@click.group()
def pod():
    """Manage pods."""


def _stores(engine):
    from pallet.kernel.pods import PodStore

    engine.plugins.load("storage", "security", "runtime")
    return PodStore(engine)


def _labels(items) -> dict:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid label "{item}": expected KEY=VALUE')
        labels[key] = value
    return labels


def _create_container(engine, args: list[str]):
    """A container from a ``pallet create`` command line (every flag checked as ``create`` checks it)."""
    from pallet.kernel.cli.container import _create, create

    ctx = create.make_context("create", list(args), obj=engine)
    params = dict(ctx.params)
    return _create(engine, params.pop("image"), params.pop("command"), params)


def _start(engine, record) -> None:
    from pallet.kernel import lifecycle, monitor

    record = lifecycle.refresh(engine, record)
    if record.running:
        return
    monitor.spawn(engine, record, lifecycle.prepare(engine, record))


@pod.command("create")
@click.option("--name", default="", help="Name of the pod (default: pod-<id>).")
@click.option("-p", "--publish", multiple=True, metavar="[IP:][HOST:]CTR[/PROTO]", help="Publish a port of the pod.")
@click.option("--network", default="", help="Network of the pod (default: the engine's default network).")
@click.option("--share", default="", help="Namespaces to share: net,ipc,uts,pid (default net,ipc,uts).")
@click.option("--hostname", default="", help="Hostname of the pod's containers (default: the pod's name).")
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set metadata on the pod.")
@click.option("--infra-image", default="", help="Image of the infra container, run with its own command "
              "(default: pallet's pause loop in busybox, built in).")
@click.option("--infra-command", default="", metavar="COMMAND",
              help='Command of the infra container (a shell line or a JSON array: \'["/pause"]\').')
@click.pass_obj
def create(engine, name, publish, network, share, hostname, label, infra_image, infra_command):
    """Create a pod; its infra container is started at once and holds the shared namespaces."""
    from pallet.kernel import pods

    command = pods.parse_infra_command(infra_command) if infra_command else []
    click.echo(create_pod(engine, name, publish, network, share, hostname, _labels(label), infra_image,
                          command).id)


def create_pod(engine, name="", publish=(), network="", share="", hostname="", labels=None, infra_image="",
               infra_command=()):
    from pallet.kernel import lifecycle, pods

    store = _stores(engine)
    kinds = pods.parse_share(share)
    with store.lock():
        record = pods.new_pod(store, name, kinds, hostname, labels or {})
        if not infra_image:
            lifecycle.resolve_image(engine, pods.INFRA_IMAGE, quiet=True)
        infra = _create_container(engine, pods.infra_args(record, publish, network, infra_image,
                                                          list(infra_command)))
        record.infra_id = infra.id
        store.save(record)
    try:
        _start(engine, infra)
    except BaseException:
        remove_pod(engine, record, force=True)
        raise
    return record


def remove_pod(engine, record, force: bool) -> None:
    from pallet.kernel import lifecycle

    store = _stores(engine)
    members = [lifecycle.refresh(engine, m) for m in store.members(record)]
    running = [m.name for m in members if m.running and m.id != record.infra_id]
    if running and not force:
        raise PalletError(f"pod {record.name} has running containers ({', '.join(running)}): stop them or use -f")
    for member in reversed(members):  # the infra container last: the others are in its namespaces
        lifecycle.remove(engine, member, force=True)
    store.remove(record)


@pod.command("rm")
@click.option("-f", "--force", is_flag=True, help="Stop and remove running containers too.")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def rm(engine, force, pods):
    """Remove one or more pods and their containers."""
    store = _stores(engine)
    for ref in pods:
        try:
            record = store.get(ref)
        except NotFound:
            if force:
                continue
            raise
        remove_pod(engine, record, force)
        click.echo(record.id)


def _each_member(engine, refs, action, infra_first: bool) -> None:
    from pallet.kernel import lifecycle

    store = _stores(engine)
    for ref in refs:
        record = store.get(ref)
        members = store.members(record)
        for member in members if infra_first else list(reversed(members)):
            action(lifecycle.refresh(engine, member))
        click.echo(record.id)


@pod.command("start")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def start(engine, pods):
    """Start a pod: the infra container first, then its containers."""
    _each_member(engine, pods, lambda m: _start(engine, m), infra_first=True)


@pod.command("stop")
@click.option("-t", "--time", "timeout", type=int, default=10, help="Seconds to wait before killing.")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def stop(engine, timeout, pods):
    """Stop a pod: its containers, then the infra container."""
    from pallet.kernel import lifecycle

    _each_member(engine, pods, lambda m: m.running and lifecycle.stop(engine, m, timeout), infra_first=False)


@pod.command("restart")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def restart(engine, pods):
    """Stop then start a pod."""
    from pallet.kernel import lifecycle

    _each_member(engine, pods, lambda m: m.running and lifecycle.stop(engine, m, 10), infra_first=False)
    _each_member(engine, pods, lambda m: _start(engine, m), infra_first=True)


@pod.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def kill(engine, sig, pods):
    """Send a signal to every running container of a pod."""
    from pallet.kernel import lifecycle
    from pallet.kernel.runopts import parse_signal

    number = parse_signal(sig)
    _each_member(engine, pods, lambda m: m.running and lifecycle.kill(engine, m, number), infra_first=False)


@pod.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt (pallet never prompts).")
@click.pass_obj
def prune(engine, force):
    """Remove every pod none of whose containers is running."""
    from pallet.kernel import lifecycle

    store = _stores(engine)
    for record in store.all():
        if not any(lifecycle.refresh(engine, m).running for m in store.members(record)):
            remove_pod(engine, record, force=True)
            click.echo(record.id)


def _summary(engine, store, record) -> dict:
    from pallet.kernel import lifecycle, pods

    members = [lifecycle.refresh(engine, m) for m in store.members(record)]
    return {"Id": record.id, "Name": record.name, "Status": pods.status(members),
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)), "CreatedUnix": record.created,
            "InfraContainerId": record.infra_id, "Labels": record.labels, "SharedNamespaces": record.share,
            "Hostname": record.hostname, "NumContainers": len(members),
            "Containers": [{"Id": m.id, "Name": m.name, "State": m.status} for m in members]}


POD_COLUMNS = [("POD ID", "ID"), ("NAME", "Name"), ("STATUS", "Status"), ("CREATED", "CreatedAgo"),
               ("INFRA ID", "InfraID"), ("# OF CONTAINERS", "NumberOfContainers")]


def _pod_filter(filters: dict, row: dict) -> bool:
    """podman's ``pod ps --filter``: id, name (substring), status, label (KEY or KEY=VALUE)."""
    for key, values in filters.items():
        if key == "id":
            ok = any(row["Id"].startswith(v) for v in values)
        elif key == "name":
            ok = any(v in row["Name"] for v in values)
        elif key == "status":
            ok = row["Status"].lower() in {v.lower() for v in values}
        elif key == "label":
            ok = all(k in row["Labels"] and (not sep or row["Labels"][k] == v)
                     for k, sep, v in (value.partition("=") for value in values))
        else:
            raise UsageError(f"invalid filter {key!r} (one of id, name, status, label)")
        if not ok:
            return False
    return True


@pod.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only pod IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate pod and infra IDs.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter by id, name, status or label.")
@click.option("--format", "fmt", default="", metavar="TEMPLATE",
              help="'json' for a JSON list, or a Go template ('{{.Name}} {{.Status}}', 'table …').")
@click.pass_obj
def ls(engine, quiet, no_trunc, filters, fmt):
    """List pods."""
    from pallet.kernel.cli.output import emit, filter_map
    from pallet.kernel.humanize import duration

    store = _stores(engine)
    wanted = filter_map(filters)
    rows = [row for row in (_summary(engine, store, r) for r in store.all()) if _pod_filter(wanted, row)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    cut = (lambda text: text) if no_trunc else (lambda text: text[:12])
    shown = [{**row, "ID": cut(row["Id"]), "InfraID": cut(row["InfraContainerId"]),
              "NumberOfContainers": row["NumContainers"],
              "CreatedAgo": duration(max(0.0, time.time() - row["CreatedUnix"])) + " ago"} for row in rows]
    emit(shown, POD_COLUMNS, fmt or None, quiet_field="ID", quiet=quiet)


@pod.command("inspect")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def inspect(engine, pods):
    """Low-level information on pods (JSON)."""
    store = _stores(engine)
    click.echo(json.dumps([_summary(engine, store, store.get(ref)) for ref in pods], indent=2))


@pod.command("ps")
@click.argument("pod_ref", metavar="POD")
@click.pass_obj
def ps(engine, pod_ref):
    """List the containers of a pod."""
    store = _stores(engine)
    summary = _summary(engine, store, store.get(pod_ref))
    click.echo(f"{'CONTAINER ID':<14} {'NAME':<24} STATE")
    for member in summary["Containers"]:
        click.echo(f"{member['Id'][:12]:<14} {member['Name']:<24} {member['State']}")


@pod.command("top")
@click.argument("pod_ref", metavar="POD")
@click.pass_context
def top(ctx, pod_ref):
    """The processes of every running container of a pod."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli import container_ops as commands

    store = _stores(ctx.obj)
    for member in store.members(store.get(pod_ref)):
        if lifecycle.refresh(ctx.obj, member).running:
            click.echo(f"== {member.name}")
            ctx.invoke(commands.top, name=member.id, ps_args=())


@pod.command("logs")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--tail", default="all", help="Lines to show from the end of each log.")
@click.argument("pod_ref", metavar="POD")
@click.pass_obj
def logs(engine, timestamps, tail, pod_ref):
    """The logs of every container of a pod but the infra one, each line prefixed with its name."""
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.stdio import read_log

    if tail != "all" and not (tail.isascii() and tail.isdigit()):
        raise UsageError(f'invalid argument "{tail}" for "-n, --tail" flag')
    store = _stores(engine)
    containers = ContainerStore(engine)
    for member in store.members(store.get(pod_ref), infra=False):
        entries = list(read_log(containers.log_path(member.id)))
        if tail != "all":
            entries = entries[-int(tail):] if int(tail) else []
        for stream, stamp, text in entries:
            line = f"{member.name} {stamp + ' ' if timestamps else ''}{text}"
            click.echo(line, nl=not line.endswith("\n"), err=stream == "stderr")


def _freeze(engine, refs, pause: bool) -> None:
    """Pause (freeze the cgroups of) or unpause every running container of the pods."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    def act(member):
        if member.status == ("running" if pause else "paused"):
            runtime = lifecycle.runtime_for(engine, member)
            (runtime.pause if pause else runtime.resume)(member.id)
            ContainerStore(engine).update(member.id, status="paused" if pause else "running")

    _each_member(engine, refs, act, infra_first=not pause)


@pod.command("pause")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def pause(engine, pods):
    """Pause every running container of a pod."""
    _freeze(engine, pods, True)


@pod.command("unpause")
@click.argument("pods", nargs=-1, required=True)
@click.pass_obj
def unpause(engine, pods):
    """Unpause the paused containers of a pod."""
    _freeze(engine, pods, False)


@pod.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.argument("pods", nargs=-1, required=True)
@click.pass_context
def stats(ctx, no_stream, pods):
    """Resource usage of the running containers of pods (as ``pallet stats`` shows them)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cli import container_ops

    store = _stores(ctx.obj)
    ids = [m.id for ref in pods for m in store.members(store.get(ref)) if lifecycle.refresh(ctx.obj, m).running]
    if not ids:
        raise PalletError(f"no running containers in pod {', '.join(pods)}")
    ctx.invoke(container_ops.stats, show_all=False, no_stream=no_stream, no_trunc=False, fmt=None, names=tuple(ids))
