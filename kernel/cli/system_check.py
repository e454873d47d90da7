"""``pallet system check [--repair]`` and ``pallet system reset [-f]``."""

from __future__ import annotations

import click

from pallet.kernel.errors import PalletError


@click.command("check")
@click.option("-r", "--repair", is_flag=True, help="Remove what nothing references: orphans, debris, corrupt blobs.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@click.pass_context
def check(ctx, repair, quiet):
    """Verify blobs, images, layers, containers and leases against each other; find crash debris.

    Exits 0 when the root is consistent (or --repair fixed every problem), 1 otherwise.
    """
    from pallet.kernel import check as checker
    from pallet.kernel import humanize

    engine = ctx.obj
    findings = checker.check(engine)
    if not quiet:
        for finding in findings:
            size = f" ({humanize.size(finding.size)})" if finding.size else ""
            click.echo(f"{finding.kind}\t{finding.name}\t{finding.problem}{size}")
    if repair and findings:
        for line in checker.repair(engine, findings):
            click.echo(line)
        findings = checker.check(engine)
        for finding in findings:
            click.echo(f"left: {finding.kind}\t{finding.name}\t{finding.problem}")
    total = sum(f.size for f in findings)
    if not findings:
        click.echo("no problems found")
        return
    hint = "" if repair else "; 'pallet system check --repair' removes what nothing references"
    raise PalletError(f"{len(findings)} problem(s) found, {humanize.size(total)}{hint}")


@click.command("reset")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def reset(ctx, force):
    """Remove every container, image, volume, network and layer of the root, and what it made outside
    itself: its bridge and veths, its nftables table, its network registry record, its cgroup parents."""
    from pallet.kernel import reset as resetting

    engine = ctx.obj
    if not force and not click.confirm(
            f"WARNING! This will remove all containers, images, volumes, networks and build cache of "
            f"{engine.root},\nand its bridges, nftables table and cgroups.\nAre you sure you want to continue?"):
        return
    for line in resetting.reset(engine):
        click.echo(line)
