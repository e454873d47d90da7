"""``pallet info``, ``pallet version`` and the ``system`` group."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from pallet.kernel import __version__
from pallet.kernel.cli import LazyGroup
from pallet.kernel.cli.output import json_option
from pallet.kernel.errors import PalletError


# ``pallet system service``: podman's name for ``pallet serve``, imported only when invoked.
SERVICE = {"service": ("pallet.kernel.cli.serve", "serve", "Serve the Docker Engine API (pallet serve)")}


@click.group("system", cls=LazyGroup, lazy=SERVICE)
def system():
    """Manage pallet."""


def storage_block(engine) -> dict:
    """The Storage Driver block of ``info``: never fails, reports the reason instead."""
    try:
        name, source = engine.select_storage_driver()
    except PalletError as exc:
        return {"Driver": None, "Error": str(exc)}
    block = {"Driver": name, "ChosenBy": source}
    engine.plugins.load("storage")  # a recorded driver is chosen without loading any plugin
    record = engine.plugins.drivers["storage"].get(name)
    if record is None:
        block["Error"] = f'storage driver "{name}" is not registered by any loaded plugin'
        return block
    availability = record.availability(engine.storage_home(name), engine.config.storage_options(name))
    block["Availability"] = str(availability)
    if availability.available:
        try:
            block["Status"] = [[key, value] for key, value in engine.open_driver("storage", name).status()]
        except Exception as exc:  # a vendor driver's status() must not break info
            block["Status"] = [["Error", f"{type(exc).__name__}: {exc}"]]
    return block


def info_data(engine) -> dict:
    from pallet.kernel import host
    from pallet.kernel.images.mirrors import docker_mirrors

    manager = engine.plugins
    manager.load()
    cgroups = host.cgroup_info()
    counts: dict[str, dict[str, int]] = {}
    for plugin in manager.all_plugins():
        kind = plugin.group.split(".", 1)[1]
        counts.setdefault(kind, {"loaded": 0, "broken": 0, "disabled": 0})[plugin.state] += 1
    security = []
    for name, record in sorted(manager.drivers["security"].items(), key=lambda kv: kv[1].cls.order):
        if record.cls.default_enabled and record.availability().available:
            security.append(name)
    return {
        **docker_counts(engine),
        "ServerVersion": __version__,
        "RootDir": str(engine.root),
        "RunRoot": str(engine.run_root),
        "ConfigFile": str(engine.config.config_path),
        "Storage": storage_block(engine),
        "DefaultNetwork": engine.config.section("network").get("default", "bridge"),
        "Networks": sorted(manager.drivers["network"]),
        "SecurityOptions": security,
        "Cgroup": {
            "Version": cgroups.version,
            "V1Controllers": sorted(cgroups.v1),
            "V2Mount": cgroups.v2_mount,
            "V2Controllers": cgroups.v2_controllers,
        },
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if str(cgroups.version) == "2" else "1",  # Docker says 1 on a hybrid host
        "Kernel": host.kernel_release(),
        "KernelVersion": host.kernel_release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": os.uname().machine,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "Name": os.uname().nodename,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
                           "Insecure": list(engine.config.section("registries").get("insecure") or []),
                           "Mirrors": docker_mirrors(engine.config)},
        "Warnings": cgroup_warnings(cgroups),
        "KernelFeatures": host.kernel_features(),
        "Plugins": counts,
        "BrokenPlugins": [
            {"Name": p.name, "Group": p.group, "Distribution": p.distribution, "Error": p.error}
            for p in manager.all_plugins() if p.state == "broken"
        ],
    }


def docker_counts(engine) -> dict:
    """Docker's Containers/ContainersRunning/Paused/Stopped and Images counts."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    statuses = [lifecycle.refresh(engine, r).status for r in ContainerStore(engine).all()]
    try:
        images = len(lifecycle.image_store(engine).all())
    except PalletError:
        images = 0
    return {"Containers": len(statuses), "ContainersRunning": statuses.count("running"),
            "ContainersPaused": statuses.count("paused"),
            "ContainersStopped": len(statuses) - statuses.count("running") - statuses.count("paused"),
            "Images": images}


def cgroup_warnings(cgroups) -> list[str]:
    """Docker's warnings for limits this host's cgroups cannot enforce."""
    warnings = []
    memory = Path(cgroups.v1["memory"]) if "memory" in cgroups.v1 else None
    if memory and not (memory / "memory.memsw.limit_in_bytes").exists():
        warnings.append("WARNING: No swap limit support")
    from pallet.kernel.cgroups import blkio_weight_supported

    v1 = {name: Path(path) for name, path in cgroups.v1.items()}
    if ("blkio" in v1 or cgroups.v2_mount) and not blkio_weight_supported(v1, cgroups.v2_mount):
        warnings.append("WARNING: No blkio weight support")
    if ("blkio" in v1 or cgroups.v2_mount) and not blkio_weight_supported(v1, cgroups.v2_mount, "weight_device"):
        warnings.append("WARNING: No blkio weight_device support")
    return warnings


def _os_name() -> str:
    try:
        with open("/etc/os-release") as handle:
            fields = dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)
    except OSError:
        return "Linux"
    return fields.get("PRETTY_NAME", "Linux").strip('"')


@click.command("info")
@json_option
@click.option("--format", "fmt", metavar="TEMPLATE", help="'json' or a Go-style template like '{{.Storage.Driver}}'.")
@click.pass_obj
def info(engine, as_json, fmt):
    """Display system-wide information."""
    data = info_data(engine)
    if as_json or fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    if fmt:
        from pallet.kernel.cli.output import render_template
        click.echo(render_template(fmt, data))
        return
    from pallet.kernel.humanize import size

    storage = data["Storage"]
    lines = [
        f"Containers: {data['Containers']}",
        f" Running: {data['ContainersRunning']}",
        f" Paused: {data['ContainersPaused']}",
        f" Stopped: {data['ContainersStopped']}",
        f"Images: {data['Images']}",
        f"Server Version: {data['ServerVersion']}",
        f"Root Dir: {data['RootDir']}",
        f"Run Root: {data['RunRoot']}",
        f"Storage Driver: {storage.get('Driver') or '(none)'}",
    ]
    if "Error" in storage:
        lines.append(f" Error: {storage['Error']}")
    for key, value in storage.get("Status", []):
        lines.append(f" {key}: {value}")
    cg = data["Cgroup"]
    lines += [
        f"Cgroup Driver: {data['CgroupDriver']}",
        f"Cgroup Version: {cg['Version']}",
        f" v1 controllers: {', '.join(cg['V1Controllers']) or '-'}",
        f" v2 mount: {cg['V2Mount'] or '-'} ({', '.join(cg['V2Controllers']) or 'no controllers'})",
        f"Default Network: {data['DefaultNetwork']}",
        f"Network drivers: {', '.join(data['Networks'])}",
        f"Security Options: {', '.join(data['SecurityOptions']) or '-'}",
        f"Kernel Version: {data['Kernel']}",
        f"Operating System: {data['OperatingSystem']}",
        f"OSType: {data['OSType']}",
        f"Architecture: {data['Architecture']}",
        f"CPUs: {data['NCPU']}",
        f"Total Memory: {size(data['MemTotal'])}",
        f"Name: {data['Name']}",
        "Kernel Features: " + ", ".join(k for k, v in data["KernelFeatures"].items() if v),
        "Plugins: " + "; ".join(
            f"{kind} {c['loaded']} loaded" + (f", {c['broken']} broken" if c["broken"] else "")
            + (f", {c['disabled']} disabled" if c["disabled"] else "")
            for kind, c in sorted(data["Plugins"].items())
        ),
    ]
    for broken in data["BrokenPlugins"]:
        lines.append(f" Broken: {broken['Name']} ({broken['Distribution'] or 'unknown'}): {broken['Error']}")
    if data["RegistryConfig"]["Mirrors"]:
        lines.append("Registry Mirrors:")
        lines += [f" {m}" for m in data["RegistryConfig"]["Mirrors"]]
    if data["RegistryConfig"]["Insecure"]:
        lines.append("Insecure Registries:")
        lines += [f" {r}" for r in data["RegistryConfig"]["InsecureRegistryCIDRs"] + data["RegistryConfig"]["Insecure"]]
    click.echo("\n".join(lines))
    for warning in data["Warnings"]:
        click.echo(warning, err=True)  # as Docker: on stderr, so that scripts parsing stdout are not disturbed


@click.command("version")
@json_option
@click.option("-f", "--format", "fmt", metavar="TEMPLATE",
              help="'json' or a Go template like '{{.Version}}' or Docker's '{{.Server.Version}}'.")
def version(as_json, fmt):
    """Show the pallet version."""
    import platform

    data = {"Version": __version__, "Python": platform.python_version(), "Os": "linux", "Arch": platform.machine()}
    if as_json or fmt:
        data.update(docker_version())
    if as_json or fmt == "json":
        click.echo(json.dumps(data))
    elif fmt:
        from pallet.kernel.cli.output import render_template

        click.echo(render_template(fmt, data))
    else:
        click.echo("\n".join(f"{k}: {v}" for k, v in data.items()))


def docker_version() -> dict:
    """Docker's ``Client`` and ``Server`` sections, so that ``{{.Server.Version}}`` works in scripts: the
    daemonless CLI is both; the server section is also what ``pallet serve`` answers on ``GET /version``."""
    import platform

    from pallet.kernel import host
    from pallet.kernel.api.common import API_VERSION, MIN_API_VERSION

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    go_version = "python" + platform.python_version()
    kernel = host.kernel_release()
    component = {"Name": "Engine", "Version": __version__,
                 "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                             "Arch": arch, "KernelVersion": kernel, "Experimental": "false",
                             "GitCommit": "", "GoVersion": go_version, "BuildTime": ""}}
    server = {"Platform": {"Name": "Pallet"}, "Components": [component], "Version": __version__,
              "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
              "GoVersion": go_version, "Os": "linux", "Arch": arch, "KernelVersion": kernel, "BuildTime": ""}
    client = {"Platform": {"Name": "Pallet"}, "Version": __version__, "ApiVersion": API_VERSION,
              "DefaultAPIVersion": API_VERSION, "GitCommit": "", "GoVersion": go_version, "Os": "linux",
              "Arch": arch, "BuildTime": "", "Context": "default"}
    return {"Client": client, "Server": server}


system.add_command(info)


def _add_space_commands() -> None:
    from pallet.kernel.cli.system_space import df, prune

    system.add_command(df)
    system.add_command(prune)
    from pallet.kernel.cli.services import boot

    system.add_command(boot)
    from pallet.kernel.cli.events import events_

    system.add_command(events_)   # docker system events = docker events


_add_space_commands()


def _add_check_commands() -> None:
    from pallet.kernel.cli.system_check import check, reset

    system.add_command(check)
    system.add_command(reset)


_add_check_commands()
