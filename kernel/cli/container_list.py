"""Reading container state: ``ps`` (Docker's columns, filters, formats) and ``inspect``."""

from __future__ import annotations

import json
import time

import click

from pallet.kernel.cli.output import emit, format_option
from pallet.kernel.humanize import duration
from pallet.kernel.errors import UsageError


def _store(engine):
    from pallet.kernel.containers import ContainerStore
    return ContainerStore(engine)


def status_text(record, now: float, engine=None) -> str:
    """Docker's STATUS column; with ``engine``, also a pending restart and the health state."""
    if engine is not None:
        from pallet.kernel import health, restart

        if restart.status_suffix(engine, record):
            return f"Restarting ({record.exit_code}) {duration(now - record.finished_at)} ago"
        if record.status == "running" and health.ps_suffix(engine, record):
            return f"Up {duration(now - record.started_at)} {health.ps_suffix(engine, record)}"
    if record.status == "running":
        return f"Up {duration(now - record.started_at)}"
    if record.status == "paused":
        return f"Up {duration(now - record.started_at)} (Paused)"
    if record.status == "exited":
        return f"Exited ({record.exit_code}) {duration(now - record.finished_at)} ago"
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


def ps_row(record, now: float, no_trunc: bool, engine=None) -> dict:
    command = " ".join((record.config.get("Entrypoint") or []) + (record.config.get("Cmd") or []))
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return {
        "ID": record.id if no_trunc else record.short_id,
        "Image": record.image_ref,
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(record.created)),
        "RunningFor": duration(now - record.created) + " ago",
        "Status": status_text(record, now, engine),
        "State": record.status,
        "Ports": ports_text(record),
        "Names": record.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(record.labels.items())),
        "Networks": record.network_mode,
        "Mounts": ",".join(m.get("Source") or m["Target"] for m in record.host_config.get("Mounts") or []),
    }


def matches(record, filters: list[tuple[str, str]], engine=None) -> bool:
    groups: dict[str, list[str]] = {}
    for key, value in filters:
        groups.setdefault(key, []).append(value)
    for key, values in groups.items():
        if key == "id":
            ok = any(record.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(v.lstrip("/") in record.name for v in values)
        elif key == "label":
            ok = all(label_match(record.labels, v) for v in values)
        elif key == "status":
            ok = record.status in values
            if not ok and "restarting" in values and engine is not None:
                from pallet.kernel import restart

                ok = restart.status_suffix(engine, record)
        elif key == "exited":
            ok = record.status == "exited" and str(record.exit_code) in values
        elif key == "ancestor":
            ok = any(v in (record.image_ref, record.image_id) or record.image_id.removeprefix("sha256:").startswith(v)
                     for v in values)
        elif key == "network":
            ok = record.network_mode in values
        elif key == "health" and engine is not None:  # Docker's: starting, healthy, unhealthy, none
            from pallet.kernel import health

            state = health.inspect_state(engine, record)
            ok = (state or {}).get("Status", "none") in values
        else:
            raise UsageError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def label_match(labels: dict, want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def parse_filters(values) -> list[tuple[str, str]]:
    result = []
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad format of filter (expected name=value): {item}")
        result.append((key, value))
    return result


PS_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
PS_COLUMNS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
              ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]


@click.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers (default shows just running).")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, label, status, exited, ancestor, network, health).")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers.")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes.")
@format_option
@click.pass_obj
def ls(engine, show_all, quiet, filters, no_trunc, last, latest, size, fmt):
    """List containers."""
    from pallet.kernel import lifecycle

    wanted = parse_filters(filters)
    for key, value in wanted:
        if key == "status" and value not in PS_STATUSES:
            raise UsageError(f"invalid filter 'status={value}'")
        if key == "health" and value not in ("starting", "healthy", "unhealthy", "none"):
            raise UsageError(f"Unrecognised filter value for health: {value}")
    now = time.time()
    # Shared: kept parsed between calls (refresh and the rows only read them); a resident engine's worker
    # inherits them parsed, so 100 records cost a stat each instead of a parse.
    records = sorted((lifecycle.refresh(engine, r) for r in _store(engine).all(shared=True)), key=lambda r: -r.created)
    if latest:
        last = 1
    if not show_all and last < 0 and not any(k in ("status", "exited") for k, _ in wanted):
        records = [r for r in records if r.running]
    records = [r for r in records if matches(r, wanted, engine)]
    if last >= 0:
        records = records[:last]
    rows = [ps_row(r, now, no_trunc, engine) for r in records]
    columns = PS_COLUMNS
    if size:
        from pallet.kernel.humanize import size as human

        for row, record in zip(rows, records):
            rw, rootfs = container_sizes(engine, record)
            row["Size"] = f"{human(rw)} (virtual {human(rootfs)})"
        columns = PS_COLUMNS + [("SIZE", "Size")]
    emit(rows, columns, fmt=fmt, quiet=quiet, quiet_field="ID")



@click.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format the output using a Go-style template.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(engine, fmt, size, names):
    """Display detailed information on one or more containers."""
    _inspect(engine, names, fmt, containers_only=True, size=size)


def container_sizes(engine, record) -> tuple[int, int]:
    """Docker's SizeRw (the container's own layer) and SizeRootFs (with its image)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.errors import PalletError

    engine.plugins.engage("storage", "runtime")
    try:
        rw = engine.storage.diff_size(record.id, record.image_top_layer)
    except Exception:  # noqa: BLE001 - a driver that cannot measure reports 0, as Docker's does
        rw = 0
    try:
        image = lifecycle.image_store(engine).resolve(record.image_id).size or 0
    except PalletError:
        image = 0
    return rw, rw + image


def _inspect(engine, names, fmt, containers_only: bool, size: bool = False):
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.output import render_template
    from pallet.kernel.errors import NotFound

    results, missing = [], []
    for name in names:
        try:
            record = lifecycle.refresh(engine, _store(engine).get(name))
            results.append(inspect_record(engine, record))
            if size:
                results[-1]["SizeRw"], results[-1]["SizeRootFs"] = container_sizes(engine, record)
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
    from pallet.kernel.images import ImageStore

    store = ImageStore(engine)
    record = store.resolve(name)
    return store.inspect(record)


@click.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format the output using a Go-style template.")
@click.option("--type", "kind", type=click.Choice(["container", "image"]), default=None, help="Only this kind.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect_any(engine, fmt, kind, size, names):
    """Return low-level information on containers or images."""
    if kind == "image":
        from pallet.kernel.cli.output import render_template

        documents = [_inspect_image(engine, n) for n in names]
        click.echo("\n".join(render_template(fmt, d) for d in documents) if fmt else json.dumps(documents, indent=4))
        return
    _inspect(engine, names, fmt, containers_only=kind == "container", size=size)


def inspect_record(engine, record) -> dict:
    """Docker's ``inspect`` shape, derived from the record."""
    from datetime import datetime, timezone

    def iso(ts):
        if not ts:
            return "0001-01-01T00:00:00Z"
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    from pallet.kernel import health, restart

    store = _store(engine)
    config = record.config
    restarting = restart.status_suffix(engine, record)
    state_health = health.inspect_state(engine, record)
    return {
        "Id": record.id,
        "Created": iso(record.created),
        "Path": (config.get("Entrypoint") or config.get("Cmd") or [""])[0],
        "Args": ((config.get("Entrypoint") or []) + (config.get("Cmd") or []))[1:],
        "State": {
            "Status": "restarting" if restarting else record.status, "Running": record.status in ("running", "paused"),
            "Paused": record.status == "paused", "Restarting": restarting, "OOMKilled": record.oom_killed,
            "Dead": record.status == "dead", "Pid": record.pid if record.running else 0,
            "ExitCode": record.exit_code, "Error": record.error, "StartedAt": iso(record.started_at),
            "FinishedAt": iso(record.finished_at),
            **({"Health": state_health} if state_health else {}),
        },
        "Image": record.image_id,
        "ResolvConfPath": str(store.run_dir(record.id) / "resolv.conf"),
        "HostnamePath": str(store.run_dir(record.id) / "hostname"),
        "HostsPath": str(store.run_dir(record.id) / "hosts"),
        "LogPath": str(store.log_path(record.id)),
        "Name": "/" + record.name,
        "RestartCount": record.restart_count,
        "Driver": record.storage_driver,
        "Platform": "linux",
        "HostConfig": record.host_config,
        "Mounts": [{"Type": m["Type"], **({"Name": m.get("Source", "")} if m["Type"] == "volume" else {}),
                    "Source": m.get("Source", ""), "Destination": m["Target"], "RW": not m.get("ReadOnly")}
                   for m in record.host_config.get("Mounts") or []],
        "Config": {**config, "Labels": record.labels},
        "NetworkSettings": network_settings(record),
    }


def network_settings(record) -> dict:
    net = record.network or {}
    return {
        # kernel.network.attach.connect returns Docker's field names; they are shown as they are.
        "Bridge": "", "SandboxKey": net.get("sandbox", ""), "Ports": net.get("ports") or record.port_bindings,
        "Gateway": net.get("Gateway", ""), "IPAddress": net.get("IPAddress", ""),
        "IPPrefixLen": net.get("IPPrefixLen", 0), "MacAddress": net.get("MacAddress", ""),
        "GlobalIPv6Address": net.get("GlobalIPv6Address", ""), "GlobalIPv6PrefixLen": net.get("GlobalIPv6PrefixLen", 0),
        "IPv6Gateway": net.get("IPv6Gateway", ""),
        "Networks": net.get("Networks") or {record.network_mode: {"NetworkID": "", "IPAddress": "", "Gateway": ""}},
    }
