"""``pallet system df`` and ``pallet system prune``: disk use and clean-up across images, containers, volumes."""

from __future__ import annotations

import contextlib

import click

from pallet.kernel.cli.output import emit, format_option
from pallet.kernel.errors import PalletError


def _container_size(engine, record) -> int:
    with contextlib.suppress(Exception):
        return engine.storage.diff_size(record.id, record.image_top_layer)
    return 0


def disk_usage(engine) -> list[dict]:
    """Docker's four rows: TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE (sizes in bytes here)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    containers = [lifecycle.refresh(engine, r) for r in ContainerStore(engine).all()]
    rows = []
    try:
        images = lifecycle.image_store(engine).all()
    except PalletError:
        images = []
    used = {c.image_id for c in containers}
    image_size = sum(i.size or 0 for i in images)
    rows.append({"Type": "Images", "TotalCount": len(images), "Active": sum(i.id in used for i in images),
                 "Size": image_size, "Reclaimable": sum(i.size or 0 for i in images if i.id not in used)})
    sizes = {c.id: _container_size(engine, c) for c in containers}
    rows.append({"Type": "Containers", "TotalCount": len(containers), "Active": sum(c.running for c in containers),
                 "Size": sum(sizes.values()), "Reclaimable": sum(sizes[c.id] for c in containers if not c.running)})
    volumes, active, size, reclaimable = [], 0, 0, 0
    with contextlib.suppress(PalletError):
        store = lifecycle.volume_store(engine)
        for volume in store.all():
            volumes.append(volume)
            amount = store.size(volume)
            size += amount
            if store.in_use_by(volume.name):
                active += 1
            else:
                reclaimable += amount
    rows.append({"Type": "Local Volumes", "TotalCount": len(volumes), "Active": active, "Size": size,
                 "Reclaimable": reclaimable})
    rows.append({"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": 0, "Reclaimable": 0})
    return rows


@click.command("df")
@format_option
@click.pass_obj
def df(engine, fmt):
    """Show pallet disk usage."""
    from pallet.kernel.humanize import size

    engine.plugins.load("storage", "runtime")
    rows = []
    for row in disk_usage(engine):
        percent = f" ({100 * row['Reclaimable'] // row['Size']}%)" if row["Size"] else ""
        rows.append({**row, "Size": size(row["Size"]), "Reclaimable": size(row["Reclaimable"]) + percent})
    emit(rows, [("TYPE", "Type"), ("TOTAL", "TotalCount"), ("ACTIVE", "Active"), ("SIZE", "Size"),
                ("RECLAIMABLE", "Reclaimable")], fmt=fmt)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones.")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx, all_, volumes, force):
    """Remove stopped containers, unused networks, dangling (or, with -a, all unused) images and build cache."""
    import importlib

    if not force:
        items = ["all stopped containers", "all networks not used by at least one container",
                 "all images without at least one container associated to them" if all_ else "all dangling images"]
        if volumes:
            items.append("all anonymous volumes not used by at least one container")
        text = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items)
        if not click.confirm(text + "\nAre you sure you want to continue?"):
            return
    steps = [("pallet.kernel.cli.container", "container", {"force": True, "filters": ()}),
             ("pallet.kernel.cli.network", "network", {"force": True, "filters": ()}),
             ("pallet.kernel.cli.image", "image", {"all_": all_, "force": True})]
    if volumes:
        steps.append(("pallet.kernel.cli.volume", "volume", {"all_volumes": False, "filters": (), "force": True}))
    for module_name, group, params in steps:
        command = getattr(importlib.import_module(module_name), group).get_command(ctx, "prune")
        ctx.invoke(command, **params)
