"""``pallet healthcheck run`` and ``pallet system boot``: the service-keeping commands
(the work is in :mod:`pallet.kernel.health` and :mod:`pallet.kernel.restart`)."""

from __future__ import annotations

import click

from pallet.kernel.errors import Conflict


@click.group("healthcheck")
def healthcheck():
    """Manage health checks of containers."""


@healthcheck.command("run")
@click.argument("name")
@click.pass_obj
def healthcheck_run(engine, name):
    """Run a container's health check once now; exit 1 (and print "unhealthy") if it fails."""
    from pallet.kernel import health, lifecycle
    from pallet.kernel.containers import ContainerStore

    engine.plugins.load("storage", "security", "runtime")
    record = lifecycle.refresh(engine, ContainerStore(engine).get(name))
    if record.status != "running":
        raise Conflict(f"container {record.name} is not running")
    check = health.check_config(record)
    before = health.load_state(engine, record).get("FailingStreak", 0)
    status = health.check_now(engine, record)
    failed = health.load_state(engine, record).get("FailingStreak", 0) > before or status == "unhealthy"
    if failed:
        click.echo("unhealthy" if status == "unhealthy" else f"failed ({status}, retries {check['Retries']})")
        raise click.exceptions.Exit(1)
    click.echo(status)


@click.command("boot")
@click.option("--policy-restart", "policy_restart", metavar="ID", hidden=True,
              help="(internal) a restart policy's restart of one container, after its back-off.")
@click.pass_obj
def boot(engine, policy_restart):
    """Start every always/unless-stopped container after a host reboot (run once at boot)."""
    from pallet.kernel import boot as booting

    engine.plugins.load("storage", "security", "runtime")
    if policy_restart:
        booting.policy_restart(engine, policy_restart)
    elif booting.boot(engine):
        raise click.exceptions.Exit(1)
