"""``pallet security``: print pallet's default seccomp profile; check a container's confinement."""

from __future__ import annotations

import json

import click


@click.group("security")
def security():
    """Security profiles and checks."""


@security.group("seccomp")
def seccomp():
    """Seccomp profiles."""


@seccomp.command("default")
def seccomp_default():
    """Print pallet's default seccomp profile (Docker's JSON format) to start your own from."""
    from pallet.plugins.security.seccomp_default import default_profile

    click.echo(json.dumps(default_profile(), indent=2))



@seccomp.command("convert")
@click.argument("profile", required=False)
@click.option("--cap-add", multiple=True, help="Capabilities beyond Docker's defaults the container would hold.")
@click.option("--cap-drop", multiple=True, help="Default capabilities the container would not hold.")
def seccomp_convert(profile, cap_add, cap_drop):
    """Print the OCI linux.seccomp that PROFILE (default: pallet's) becomes on this host.

    Conditional rules are resolved for this architecture, kernel and capability set, so
    this shows exactly what a container would be given; a malformed profile is reported.
    """
    from pallet.plugins.security import seccomp_format
    from pallet.plugins.security.capabilities import host_capabilities, resolve_capabilities
    from pallet.plugins.security.seccomp_default import default_profile

    caps = resolve_capabilities(cap_add, cap_drop, False, host_capabilities())
    data = seccomp_format.load(profile) if profile else default_profile()
    click.echo(json.dumps(seccomp_format.to_oci(data, caps, source=profile or "pallet-default"), indent=2))


@security.group("userns")
def userns_group():
    """User namespace remapping."""


@userns_group.command("setup")
@click.argument("user", default="pallet")
@click.option("--subuid-file", default="/etc/subuid", show_default=True, help="Subordinate UID file to update.")
@click.option("--subgid-file", default="/etc/subgid", show_default=True, help="Subordinate GID file to update.")
def userns_setup(user, subuid_file, subgid_file):
    """Give USER (default: pallet) 65536 subordinate UIDs and GIDs, for [security] userns_remap."""
    from pathlib import Path

    from pallet.plugins.security.userns import add_entry

    for path in (subuid_file, subgid_file):
        granted = add_entry(Path(path), user)
        click.echo(f"{path}: {user}:{granted.start}:{granted.count}")


@security.command("check")
@click.option("--privileged", is_flag=True, help="Run the battery in a --privileged container to show what opens up.")
@click.option("--image", default="busybox", show_default=True, help="Image with busybox to run the battery in.")
@click.option("--security-opt", multiple=True, help="Security options for the checked container.")
@click.option("--cap-add", multiple=True, help="Add Linux capabilities to the checked container.")
@click.option("--cap-drop", multiple=True, help="Drop Linux capabilities from the checked container.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def check(engine, privileged, image, security_opt, cap_add, cap_drop, as_json):
    """Run a confinement battery inside a container and print what it could not do.

    Exits 1 when a default (non --privileged) container gets through any check.
    """
    import os
    import subprocess
    import sys

    from pallet.kernel.cli.output import emit
    from pallet.kernel.errors import PalletError
    from pallet.plugins.security.battery import SCRIPT, parse_report

    argv = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(engine.root), "--run-root", str(engine.run_root)]
    if engine.config.config_path.exists():
        argv += ["--config", str(engine.config.config_path)]
    if engine.config.storage_driver_flag:
        argv += ["--storage-driver", engine.config.storage_driver_flag]
    with open("/proc/self/comm") as handle:
        comm = handle.read().strip()
    argv += ["run", "--rm", "--network", "none", "-e", f"PALLET_CHECK_HOST_PID={os.getpid()}",
             "-e", f"PALLET_CHECK_HOST_COMM={comm}"]
    argv += ["--privileged"] if privileged else []
    for flag, values in (("--security-opt", security_opt), ("--cap-add", cap_add), ("--cap-drop", cap_drop)):
        for value in values:
            argv += [flag, value]
    argv += [image, "sh", "-c", SCRIPT]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    results = parse_report(done.stdout)
    if all(r.closed is None for r in results):
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise PalletError(f"the check container did not run: {reason.removeprefix('Error: ')}")
    rows = [{"check": r.description, "result": {True: "pass", False: "OPEN", None: "unknown"}[r.closed],
             "detail": r.detail, "id": r.id} for r in results]
    emit(rows, [("CHECK", "check"), ("RESULT", "result"), ("DETAIL", "detail")], as_json=as_json)
    if not privileged and any(r.closed is not True for r in results):
        raise PalletError("the container got through some checks (see OPEN above)")
