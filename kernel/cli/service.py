"""``pallet service …``: create, ls, ps, inspect, logs, scale, update, rollback, rm (Docker's flags and columns).

The flags become a Docker ``ServiceSpec`` here; the work is in :mod:`pallet.kernel.cluster.services`.
"""

from __future__ import annotations

import copy
import json
import sys
import time

import click

from pallet.kernel.cli.output import emit, filter_map, format_option, inspect_format_option, render_template
from pallet.kernel.errors import UsageError

SECOND = 10**9


@click.group("service")
def service():
    """Manage cluster services."""


# --- flags -> spec -----------------------------------------------------------------------------

def _duration(value, flag):
    from pallet.kernel.policyopts import parse_duration

    return None if value is None else parse_duration(value, flag)


def _cpus(value, flag):
    if value is None:
        return None
    try:
        return int(round(float(value) * SECOND))
    except ValueError:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: expected a number of CPUs') from None


def _size(value, flag):
    from pallet.kernel.runopts import parse_size

    return None if value is None else parse_size(value, flag)


def parse_publish(text: str) -> dict:
    """``-p 8080:80[/udp]``, ``-p 80`` or ``-p published=8080,target=80,mode=host,protocol=udp``."""
    if "=" in text:
        fields = dict(item.partition("=")[::2] for item in text.split(","))
        port = {"Protocol": fields.get("protocol", "tcp"), "PublishMode": fields.get("mode", "ingress")}
        try:
            port["TargetPort"] = int(fields["target"])
            if fields.get("published"):
                port["PublishedPort"] = int(fields["published"])
        except (KeyError, ValueError):
            raise UsageError(f'invalid argument "{text}" for "-p, --publish" flag: target port is required') from None
        if port["PublishMode"] not in ("ingress", "host"):
            raise UsageError(f'invalid publish mode "{port["PublishMode"]}": expected ingress or host')
        return port
    ports, _, protocol = text.partition("/")
    published, _, target = ports.rpartition(":")
    try:
        port = {"TargetPort": int(target), "Protocol": protocol or "tcp", "PublishMode": "ingress"}
        if published:
            port["PublishedPort"] = int(published)
    except ValueError:
        raise UsageError(f'invalid argument "{text}" for "-p, --publish" flag: invalid port') from None
    return port


def _key_values(pairs, flag) -> dict:
    values = {}
    for pair in pairs or ():
        key, _, value = pair.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{pair}" for "{flag}" flag: expected KEY=VALUE')
        values[key] = value
    return values


def _update_config(opts, prefix: str, config: dict) -> dict:
    config = dict(config)
    for option, key, convert in (("parallelism", "Parallelism", int), ("delay", "Delay", _duration),
                                 ("failure_action", "FailureAction", str), ("monitor", "Monitor", _duration),
                                 ("max_failure_ratio", "MaxFailureRatio", float), ("order", "Order", str)):
        value = opts.get(f"{prefix}_{option}")
        if value is not None:
            flag = f"--{prefix}-{option.replace('_', '-')}"
            config[key] = convert(value, flag) if convert is _duration else convert(value)
    return config


def _healthcheck(opts, current: dict | None) -> dict | None:
    if opts.get("no_healthcheck"):
        return {"Test": ["NONE"]}
    check = dict(current or {})
    if opts.get("health_cmd"):
        check["Test"] = ["CMD-SHELL", opts["health_cmd"]]
    for option, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                        ("health_start_period", "StartPeriod")):
        if opts.get(option) is not None:
            check[key] = _duration(opts[option], "--" + option.replace("_", "-"))
    if opts.get("health_retries") is not None:
        check["Retries"] = opts["health_retries"]
    return check or None


def _set_files(engine, container: dict, secret_add, secret_rm, config_add, config_rm) -> None:
    """``--secret``/``--config`` (and their ``-add``/``-rm``) as the ContainerSpec's ``Secrets`` and ``Configs``:
    an added reference replaces one with the same target, a removed name drops every reference to it."""
    from pallet.kernel.cluster import configs
    from pallet.kernel.secrets import parse_secret

    for field, name_key, added, removed, parse in (
            ("Secrets", "SecretName", secret_add, secret_rm, lambda spec: parse_secret(engine, spec)),
            ("Configs", "ConfigName", config_add, config_rm, lambda spec: configs.parse_reference(engine, spec))):
        new = [parse(spec) for spec in added]
        targets = [ref["File"]["Name"] for ref in new]
        twice = next((t for t in targets if targets.count(t) > 1), None)
        if twice:
            raise UsageError(f"duplicate {field[:-1].lower()} target for {twice} not allowed")
        kept = [ref for ref in container.get(field) or [] if ref.get(name_key) not in set(removed)
                and ref["File"]["Name"] not in set(targets)]
        if kept or new:
            container[field] = kept + new
        else:
            container.pop(field, None)


def apply_options(spec: dict, opts: dict) -> dict:
    """The flags shared by create and update, applied to ``spec`` (a copy is returned)."""
    from pallet.kernel.cluster.placement import parse_constraint

    spec = copy.deepcopy(spec)
    template = spec.setdefault("TaskTemplate", {})
    container = template.setdefault("ContainerSpec", {})
    resources = template.setdefault("Resources", {})
    limits, reservations = resources.setdefault("Limits", {}), resources.setdefault("Reservations", {})
    for option, target, key, convert in (("limit_memory", limits, "MemoryBytes", _size),
                                         ("limit_cpu", limits, "NanoCPUs", _cpus),
                                         ("reserve_memory", reservations, "MemoryBytes", _size),
                                         ("reserve_cpu", reservations, "NanoCPUs", _cpus)):
        if opts.get(option) is not None:
            target[key] = convert(opts[option], "--" + option.replace("_", "-"))
    restart = template.setdefault("RestartPolicy", {})
    if opts.get("restart_condition"):
        restart["Condition"] = opts["restart_condition"]
    if opts.get("restart_delay") is not None:
        restart["Delay"] = _duration(opts["restart_delay"], "--restart-delay")
    if opts.get("restart_max_attempts") is not None:
        restart["MaxAttempts"] = opts["restart_max_attempts"]
    if opts.get("restart_window") is not None:
        restart["Window"] = _duration(opts["restart_window"], "--restart-window")
    check = _healthcheck(opts, container.get("Healthcheck"))
    if check is not None:
        container["Healthcheck"] = check
    if opts.get("stop_grace_period") is not None:
        container["StopGracePeriod"] = _duration(opts["stop_grace_period"], "--stop-grace-period")
    for option, key in (("user", "User"), ("workdir", "Dir"), ("hostname", "Hostname"), ("stop_signal", "StopSignal")):
        if opts.get(option):
            container[key] = opts[option]
    if opts.get("entrypoint") is not None:
        container["Command"] = opts["entrypoint"].split() if opts["entrypoint"] else []
    if opts.get("init"):
        container["Init"] = True
    if opts.get("read_only"):
        container["ReadOnly"] = True
    placed = template.setdefault("Placement", {})
    if opts.get("max_replicas") is not None:
        placed["MaxReplicas"] = opts["max_replicas"]
    for constraint in list(opts.get("constraint") or ()) + list(opts.get("constraint_add") or ()):
        parse_constraint(constraint)
        placed.setdefault("Constraints", [])
        if constraint not in placed["Constraints"]:
            placed["Constraints"].append(constraint)
    for constraint in opts.get("constraint_rm") or ():
        placed["Constraints"] = [c for c in placed.get("Constraints") or [] if c != constraint]
    for preference in list(opts.get("placement_pref") or ()) + list(opts.get("placement_pref_add") or ()):
        strategy, _, descriptor = preference.partition("=")
        if strategy != "spread" or not descriptor:
            raise UsageError(f'invalid placement preference "{preference}": expected spread=node.labels.KEY')
        placed.setdefault("Preferences", []).append({"Spread": {"SpreadDescriptor": descriptor}})
    for key in ("update", "rollback"):
        name = "UpdateConfig" if key == "update" else "RollbackConfig"
        spec[name] = _update_config(opts, key, spec.get(name) or {})
    if opts.get("endpoint_mode"):
        spec.setdefault("EndpointSpec", {})["Mode"] = opts["endpoint_mode"]
    return spec


def service_options(func):
    """Flags that ``create`` and ``update`` share."""
    options = [
        click.option("--limit-memory", default=None, metavar="BYTES", help="Limit Memory."),
        click.option("--limit-cpu", default=None, metavar="DECIMAL", help="Limit CPUs."),
        click.option("--reserve-memory", default=None, metavar="BYTES", help="Reserve Memory."),
        click.option("--reserve-cpu", default=None, metavar="DECIMAL", help="Reserve CPUs."),
        click.option("--restart-condition", type=click.Choice(["none", "on-failure", "any"]), default=None,
                     help='Restart when condition is met ("none", "on-failure", "any") (default "any").'),
        click.option("--restart-delay", default=None, metavar="DURATION", help="Delay between restart attempts (default 5s)."),
        click.option("--restart-max-attempts", type=int, default=None, help="Maximum number of restarts before giving up."),
        click.option("--restart-window", default=None, metavar="DURATION", help="Window used to evaluate the restart policy."),
        click.option("--health-cmd", default=None, help="Command to run to check health."),
        click.option("--health-interval", default=None, metavar="DURATION", help="Time between running the check."),
        click.option("--health-timeout", default=None, metavar="DURATION", help="Maximum time to allow one check to run."),
        click.option("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy."),
        click.option("--health-start-period", default=None, metavar="DURATION",
                     help="Start period for the container to initialize before counting retries."),
        click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK."),
        click.option("--stop-grace-period", default=None, metavar="DURATION",
                     help="Time to wait before force killing a container (default 10s)."),
        click.option("--stop-signal", default=None, help="Signal to stop the container."),
        click.option("--user", "-u", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])."),
        click.option("--workdir", "-w", default=None, help="Working directory inside the container."),
        click.option("--hostname", default=None, help="Container hostname."),
        click.option("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image."),
        click.option("--init", is_flag=True, help="Use an init inside each service container."),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only."),
        click.option("--max-replicas", type=int, default=None, help="Maximum number of tasks per node (default 0 = unlimited)."),
        click.option("--endpoint-mode", type=click.Choice(["vip", "dnsrr"]), default=None, help="Endpoint mode (vip or dnsrr)."),
        click.option("--detach", "-d", is_flag=True, help="Exit immediately instead of waiting for the service to converge."),
        click.option("--quiet", "-q", is_flag=True, help="Suppress progress output."),
        click.option("--with-registry-auth", is_flag=True, help="Send registry authentication details to agents (no effect)."),
    ]
    for key in ("update", "rollback"):
        what = "Update" if key == "update" else "Rollback"
        options += [
            click.option(f"--{key}-parallelism", type=int, default=None,
                         help=f"Maximum number of tasks {what.lower()}d simultaneously (0 to {what.lower()} all at once)."),
            click.option(f"--{key}-delay", default=None, metavar="DURATION", help=f"Delay between {what.lower()}s."),
            click.option(f"--{key}-failure-action", default=None,
                         type=click.Choice(["pause", "continue", "rollback"] if key == "update" else ["pause", "continue"]),
                         help=f"Action on {what.lower()} failure."),
            click.option(f"--{key}-monitor", default=None, metavar="DURATION",
                         help=f"Duration after each task {what.lower()} to monitor for failure (default 5s)."),
            click.option(f"--{key}-max-failure-ratio", type=float, default=None,
                         help=f"Failure rate to tolerate during an {what.lower()}."),
            click.option(f"--{key}-order", type=click.Choice(["start-first", "stop-first"]), default=None,
                         help=f"{what} order (default \"stop-first\")."),
        ]
    for option in reversed(options):
        func = option(func)
    return func


# --- commands ----------------------------------------------------------------------------------

@service.command("create", context_settings={"allow_interspersed_args": False})
@click.option("--name", default=None, help="Service name.")
@click.option("--replicas", type=int, default=None, help="Number of tasks.")
@click.option("--mode", type=click.Choice(["replicated", "global"]), default="replicated", show_default=True,
              help="Service mode.")
@click.option("--env", "-e", multiple=True, help="Set environment variables.")
@click.option("--label", "-l", "labels", multiple=True, help="Service labels.")
@click.option("--container-label", multiple=True, help="Container labels.")
@click.option("--mount", "mounts", multiple=True, help="Attach a filesystem mount to the service.")
@click.option("--constraint", multiple=True, help="Placement constraints.")
@click.option("--placement-pref", multiple=True, help="Add a placement preference (spread=node.labels.KEY).")
@click.option("--network", "networks", multiple=True, help="Network attachments.")
@click.option("--publish", "-p", "publish", multiple=True, help="Publish a port as a node port.")
@click.option("--secret", "secrets", multiple=True, help="Specify secrets to expose to the service.")
@click.option("--config", "configs", multiple=True, help="Specify configurations to expose to the service.")
@service_options
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(engine, name, replicas, mode, env, labels, container_label, mounts, constraint, placement_pref,
           networks, publish, secrets, configs, image, args, **opts):
    """Create a new service (IMAGE [COMMAND] [ARG...])."""
    from pallet.kernel.cluster import services
    from pallet.kernel.runopts import parse_mount

    if mode == "global" and replicas is not None:
        raise UsageError("replicas can only be used with replicated mode")
    container = {"Image": image, "Labels": _key_values(container_label, "--container-label"),
                 "Env": list(env)}
    if args:
        container["Args"] = list(args)
    if mounts:
        container["Mounts"] = [{k: v for k, v in parse_mount(m).items() if k in ("Type", "Source", "Target", "ReadOnly")}
                               for m in mounts]
    _set_files(engine, container, secrets, (), configs, ())
    spec = {"Name": name or "", "Labels": _key_values(labels, "--label"),
            "TaskTemplate": {"ContainerSpec": container, "Networks": [{"Target": n} for n in networks]},
            "Mode": {"Global": {}} if mode == "global" else {"Replicated": {"Replicas": 1 if replicas is None else replicas}},
            "EndpointSpec": {"Ports": [parse_publish(p) for p in publish]}}
    spec = apply_options(spec, dict(opts, constraint=constraint, placement_pref=placement_pref))
    service_id = services.create(engine, spec)
    click.echo(service_id)
    if not opts["detach"]:
        converge(engine, service_id, opts["quiet"])


def converge(engine, service_id: str, quiet: bool, timeout: float = 600) -> None:
    """Wait until the service runs as many tasks as it wants and no update is in progress (Docker's progress)."""
    from pallet.kernel.cluster import services

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        view = services.inspect(engine, service_id)
        status, update = view["ServiceStatus"], (view.get("UpdateStatus") or {}).get("State")
        line = f"overall progress: {status['RunningTasks']} out of {status['DesiredTasks']} tasks"
        if line != last and not quiet:
            click.echo(line, err=True)
            last = line
        if update in ("paused", "rollback_paused"):
            raise click.ClickException(f"service update paused: {view['UpdateStatus'].get('Message', '')}")
        if status["RunningTasks"] == status["DesiredTasks"] and update not in ("updating", "rollback_started"):
            if not quiet:
                click.echo("verify: Service converged", err=True)
            return
        time.sleep(0.5)
    raise click.ClickException("the service did not converge in time (see: pallet service ps)")


def _image(reference: str) -> str:
    return reference.split("@", 1)[0]


def _ports(service: dict) -> str:
    return ", ".join(f"*:{p.get('PublishedPort', '')}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
                     for p in (service.get("Endpoint") or {}).get("Ports") or [])


SERVICE_COLUMNS = [("ID", "ID"), ("NAME", "Name"), ("MODE", "Mode"), ("REPLICAS", "Replicas"), ("IMAGE", "Image"),
                   ("PORTS", "Ports")]


def service_rows(views: list[dict]) -> list[dict]:
    """``service ls`` rows (also ``stack services``) from services with their ``ServiceStatus``."""
    rows = []
    for view in views:
        mode = "replicated" if "Replicated" in view["Spec"]["Mode"] else "global"
        status = view["ServiceStatus"]
        replicas = f"{status['RunningTasks']}/{status['DesiredTasks']}"
        maximum = (view["Spec"]["TaskTemplate"].get("Placement") or {}).get("MaxReplicas")
        if maximum:
            replicas += f" (max {maximum} per node)"
        rows.append({"ID": view["ID"][:12], "Name": view["Spec"]["Name"], "Mode": mode, "Replicas": replicas,
                     "Image": _image(view["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]), "Ports": _ports(view)})
    return rows


@service.command("ls")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE", help="Filter output (id, label, mode, name).")
@click.option("--quiet", "-q", is_flag=True, help="Only display IDs.")
@format_option
@click.pass_obj
def ls(engine, filters, quiet, fmt):
    """List services."""
    from pallet.kernel.cluster import services

    views = services.list_services(engine, filter_map(filters))
    if quiet:
        for view in views:
            click.echo(view["ID"])
        return
    emit(service_rows(views), SERVICE_COLUMNS, fmt=fmt)


def _state_since(task: dict) -> str:
    from pallet.kernel.cluster.store import parse_time
    from pallet.kernel.humanize import duration

    status = task["Status"]
    when = parse_time(status.get("Timestamp", ""))
    return f"{status['State'].title()} {duration(max(0.0, time.time() - when))} ago"


def print_tasks(engine, filters: dict, no_trunc: bool, quiet: bool, fmt) -> None:
    """``service ps`` / ``node ps``: tasks grouped by slot, the newest first, history rows marked ``\\_``."""
    from pallet.kernel.cluster import nodes, services

    tasks = services.list_tasks(engine, filters)
    if quiet:
        for task in tasks:
            click.echo(task["ID"])
        return
    names = {n["ID"]: n["Description"]["Hostname"] for n in nodes.list_nodes(engine)}
    groups: dict = {}
    for task in tasks:
        slot = task.get("Slot") or task.get("NodeID")
        groups.setdefault((task.get("ServiceAnnotations", {}).get("Name", ""), str(slot).zfill(8)), []).append(task)
    rows = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda t: t.get("CreatedAt", ""), reverse=True)
        for index, task in enumerate(ordered):
            name = f"{key[0]}.{task.get('Slot') or task.get('NodeID')}"
            err = task["Status"].get("Err") or ""
            ports = ", ".join(f"*:{p.get('PublishedPort', '')}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
                              for p in (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or [])
            rows.append({"ID": task["ID"] if no_trunc else task["ID"][:12],
                         "Name": name if index == 0 else f" \\_ {name}",
                         "Image": _image(task["Spec"]["ContainerSpec"]["Image"]),
                         "Node": names.get(task.get("NodeID", ""), task.get("NodeID", "")),
                         "DesiredState": task["DesiredState"].title(), "CurrentState": _state_since(task),
                         "Error": err if no_trunc or len(err) < 30 else f'"{err[:26]}…"', "Ports": ports})
    emit(rows, [("ID", "ID"), ("NAME", "Name"), ("IMAGE", "Image"), ("NODE", "Node"),
                ("DESIRED STATE", "DesiredState"), ("CURRENT STATE", "CurrentState"), ("ERROR", "Error"),
                ("PORTS", "Ports")], fmt=fmt)


@service.command("ps")
@click.argument("names", nargs=-1, required=True)
@click.option("--filter", "-f", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter output (desired-state, id, node).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--quiet", "-q", is_flag=True, help="Only display task IDs.")
@format_option
@click.pass_obj
def ps(engine, names, filters, no_trunc, quiet, fmt):
    """List the tasks of one or more services."""

    wanted = filter_map(filters)
    wanted["service"] = list(names)
    print_tasks(engine, wanted, no_trunc, quiet, fmt)


@service.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--pretty", is_flag=True, help="Print the information in a human friendly format.")
@inspect_format_option
@click.pass_obj
def inspect(engine, names, pretty, fmt):
    """Display detailed information on one or more services."""
    from pallet.kernel.cluster import services

    views = [services.inspect(engine, name) for name in names]
    for view in views:
        view.pop("ServiceStatus", None)
    if fmt:
        for view in views:
            click.echo(render_template(fmt, view))
    elif pretty:
        click.echo("\n\n".join(pretty_service(v) for v in views))
    else:
        click.echo(json.dumps(views, indent=4))


def _seconds(ns) -> str:
    """Nanoseconds as Go prints a duration (5s, 1m30s)."""
    value = (ns or 0) / SECOND
    if value == int(value):
        value = int(value)
        return f"{value // 60}m{value % 60}s" if value >= 60 else f"{value}s"
    return f"{value}s"


def pretty_service(view: dict) -> str:
    spec = view["Spec"]
    template = spec["TaskTemplate"]
    container = template["ContainerSpec"]
    lines = [f"ID:\t\t{view['ID']}", f"Name:\t\t{spec['Name']}"]
    if spec.get("Labels"):
        lines += ["Labels:"] + [f" {k}={v}" for k, v in sorted(spec["Labels"].items())]
    if "Replicated" in spec["Mode"]:
        lines += ["Service Mode:\tReplicated", f" Replicas:\t{spec['Mode']['Replicated']['Replicas']}"]
    else:
        lines += ["Service Mode:\tGlobal"]
    update = view.get("UpdateStatus")
    if update:
        lines += ["UpdateStatus:", f" State:\t\t{update.get('State', '')}", f" Started:\t{update.get('StartedAt', '')}"]
        if update.get("CompletedAt"):
            lines.append(f" Completed:\t{update['CompletedAt']}")
        lines.append(f" Message:\t{update.get('Message', '')}")
    placed = template.get("Placement") or {}
    lines.append("Placement:")
    if placed.get("Constraints"):
        lines.append(f" Constraints:\t[{' '.join(placed['Constraints'])}]")
    for preference in placed.get("Preferences") or []:
        lines.append(f" Preferences:\tspread={preference['Spread']['SpreadDescriptor']}")
    for title, key in (("UpdateConfig", "UpdateConfig"), ("RollbackConfig", "RollbackConfig")):
        config = spec.get(key) or {}
        lines += [f"{title}:", f" Parallelism:\t{config.get('Parallelism', 1)}"]
        if config.get("Delay"):
            lines.append(f" Delay:\t\t{_seconds(config['Delay'])}")
        lines += [f" On failure:\t{config.get('FailureAction', 'pause')}",
                  f" Monitoring Period: {_seconds(config.get('Monitor'))}",
                  f" Max failure ratio: {config.get('MaxFailureRatio', 0)}",
                  f" {'Update' if key == 'UpdateConfig' else 'Rollback'} order:      {config.get('Order', 'stop-first')}"]
    lines += ["ContainerSpec:", f" Image:\t\t{container['Image']}"]
    if container.get("Args"):
        lines.append(f" Args:\t\t{' '.join(container['Args'])}")
    if container.get("Env"):
        lines.append(f" Env:\t\t{' '.join(container['Env'])}")
    check = container.get("Healthcheck")
    if check and check.get("Test") != ["NONE"]:
        lines.append(f" Healthcheck:\t{' '.join(check.get('Test', [])[1:])}")
    resources = template.get("Resources") or {}
    if any((resources.get(k) or {}) for k in ("Limits", "Reservations")):
        lines.append("Resources:")
        for title, key in (("Reservations", "Reservations"), ("Limits", "Limits")):
            values = resources.get(key) or {}
            if values:
                lines.append(f" {title}:")
                if values.get("NanoCPUs"):
                    lines.append(f"  CPU:\t\t{values['NanoCPUs'] / SECOND:g}")
                if values.get("MemoryBytes"):
                    from pallet.kernel.humanize import binary_size

                    lines.append(f"  Memory:\t{binary_size(values['MemoryBytes'])}")
    if template.get("Networks"):
        lines.append(f"Networks:\t{' '.join(n['Target'] for n in template['Networks'])}")
    lines.append(f"Endpoint Mode:\t{spec.get('EndpointSpec', {}).get('Mode', 'vip')}")
    ports = (view.get("Endpoint") or {}).get("Ports") or []
    if ports:
        lines.append("Ports:")
        for port in ports:
            lines += [f" PublishedPort = {port.get('PublishedPort', '')}", f"  Protocol = {port.get('Protocol', 'tcp')}",
                      f"  TargetPort = {port['TargetPort']}", f"  PublishMode = {port.get('PublishMode', 'ingress')}"]
    return "\n".join(line.expandtabs(8) for line in lines)


@service.command("scale")
@click.argument("pairs", nargs=-1, required=True)
@click.option("--detach", "-d", is_flag=True, help="Exit immediately instead of waiting for the service to converge.")
@click.pass_obj
def scale(engine, pairs, detach):
    """Scale one or multiple replicated services (SERVICE=REPLICAS...)."""
    from pallet.kernel.cluster import services
    from pallet.kernel.errors import PalletError

    failed = None
    for pair in pairs:
        name, sep, count = pair.partition("=")
        if not sep or not (count.isascii() and count.isdigit()):
            raise UsageError(f"invalid scale specifier '{pair}'.\nSee 'pallet service scale --help'.")
        try:
            current = services.inspect(engine, name)
            if "Replicated" not in current["Spec"]["Mode"]:
                raise UsageError(f"scale can only be used with replicated mode")
            spec = copy.deepcopy(current["Spec"])
            spec["Mode"] = {"Replicated": {"Replicas": int(count)}}
            services.update(engine, current["ID"], spec)
            click.echo(f"{name} scaled to {count}")
            if not detach:
                converge(engine, current["ID"], quiet=False)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = exc
    if failed is not None:
        raise click.exceptions.Exit(1)


@service.command("update", context_settings={"allow_interspersed_args": True})
@click.option("--image", default=None, help="Service image tag.")
@click.option("--replicas", type=int, default=None, help="Number of tasks.")
@click.option("--args", "args", default=None, help="Service command args.")
@click.option("--env-add", multiple=True, help="Add or update an environment variable.")
@click.option("--env-rm", multiple=True, help="Remove an environment variable.")
@click.option("--label-add", multiple=True, help="Add or update a service label.")
@click.option("--label-rm", multiple=True, help="Remove a label by its key.")
@click.option("--constraint-add", multiple=True, help="Add or update a placement constraint.")
@click.option("--constraint-rm", multiple=True, help="Remove a constraint.")
@click.option("--placement-pref-add", multiple=True, help="Add a placement preference.")
@click.option("--publish-add", multiple=True, help="Add or update a published port.")
@click.option("--publish-rm", multiple=True, help="Remove a published port by its target port.")
@click.option("--secret-add", multiple=True, help="Add or update a secret on a service.")
@click.option("--secret-rm", multiple=True, help="Remove a secret.")
@click.option("--config-add", multiple=True, help="Add or update a config file on a service.")
@click.option("--config-rm", multiple=True, help="Remove a configuration file.")
@click.option("--force", is_flag=True, help="Force update even if no changes require it.")
@click.option("--rollback", is_flag=True, help="Rollback to previous specification.")
@service_options
@click.argument("name")
@click.pass_obj
def update(engine, image, replicas, args, env_add, env_rm, label_add, label_rm, constraint_add, constraint_rm,
           placement_pref_add, publish_add, publish_rm, secret_add, secret_rm, config_add, config_rm, force, rollback,
           name, **opts):
    """Update a service."""
    import shlex

    from pallet.kernel.cluster import services

    current = services.inspect(engine, name)
    if rollback:
        services.update(engine, current["ID"], None, rollback=True)
        click.echo(name)
        if not opts["detach"]:
            converge(engine, current["ID"], opts["quiet"])
        return
    spec = copy.deepcopy(current["Spec"])
    container = spec["TaskTemplate"]["ContainerSpec"]
    if image:
        container["Image"] = image
    if args is not None:
        container["Args"] = shlex.split(args)
    if replicas is not None:
        if "Replicated" not in spec["Mode"]:
            raise UsageError("replicas can only be used with replicated mode")
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    env = [e for e in container.get("Env") or [] if e.partition("=")[0] not in set(env_rm)
           and e.partition("=")[0] not in {a.partition("=")[0] for a in env_add}]
    container["Env"] = env + list(env_add)
    _set_files(engine, container, secret_add, secret_rm, config_add, config_rm)
    labels = spec.setdefault("Labels", {})
    for key in label_rm:
        labels.pop(key, None)
    labels.update(_key_values(label_add, "--label-add"))
    ports = [p for p in spec.get("EndpointSpec", {}).get("Ports") or []
             if str(p["TargetPort"]) not in {r.split("/")[0].split(":")[-1] for r in publish_rm}]
    spec.setdefault("EndpointSpec", {})["Ports"] = ports + [parse_publish(p) for p in publish_add]
    spec = apply_options(spec, dict(opts, constraint_add=constraint_add, constraint_rm=constraint_rm,
                                    placement_pref_add=placement_pref_add))
    if force:
        spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate") or 0) + 1
    services.update(engine, current["ID"], spec)
    click.echo(name)
    if not opts["detach"]:
        converge(engine, current["ID"], opts["quiet"])


@service.command("rollback")
@click.option("--detach", "-d", is_flag=True, help="Exit immediately instead of waiting for the service to converge.")
@click.option("--quiet", "-q", is_flag=True, help="Suppress progress output.")
@click.argument("name")
@click.pass_obj
def rollback(engine, detach, quiet, name):
    """Revert changes to a service's configuration."""
    from pallet.kernel.cluster import services

    view = services.update(engine, name, None, rollback=True)
    click.echo(name)
    if not detach:
        converge(engine, view["ID"], quiet)


@service.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rm(engine, names):
    """Remove one or more services."""
    from pallet.kernel.cluster import services
    from pallet.kernel.errors import PalletError

    failed = None
    for name in names:
        try:
            services.remove(engine, name)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = exc
    if failed is not None:
        raise click.exceptions.Exit(1)


@service.command("logs")
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Follow log output.")
@click.option("--tail", "-n", default="all", help='Number of lines to show from the end of the logs (default "all").')
@click.option("--timestamps", "-t", is_flag=True, help="Show timestamps.")
@click.option("--no-task-ids", is_flag=True, help="Do not include task IDs in output.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--raw", is_flag=True, help="Do not neatly format logs.")
@click.pass_obj
def logs(engine, name, follow, tail, timestamps, no_task_ids, no_trunc, raw):
    """Fetch the logs of a service's tasks, on every node (each node's agent serves its own)."""
    import signal
    import threading

    from pallet.kernel.cluster import logs as cluster_logs, nodes, services

    if tail != "all" and not (tail.isascii() and tail.isdigit()):
        raise UsageError(f'invalid argument "{tail}" for "-n, --tail" flag')
    view = services.inspect(engine, name)
    hostnames = {n["ID"]: n["Description"]["Hostname"] for n in nodes.list_nodes(engine)}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = {"stdout": sys.stdout, "stderr": sys.stderr}
    try:
        for task, node, stream, stamp, text in cluster_logs.gather(
                engine, view["ID"], None if tail == "all" else int(tail), follow,
                lambda message: click.echo(f"pallet: {message}", err=True), stop):
            prefix = ""
            if not raw:
                prefix = f"{view['Spec']['Name']}.{task.get('Slot') or task.get('NodeID')}" + \
                    ("" if no_task_ids else "." + (task["ID"] if no_trunc else task["ID"][:12])) + \
                    f"@{hostnames.get(node, node)}    | "
            out[stream].write((f"{stamp} " if timestamps else "") + prefix + text)
            out[stream].flush()
    except KeyboardInterrupt:
        stop.set()
