"""``pallet system df`` and ``pallet system prune``: disk use and clean-up across images, containers, volumes."""

from __future__ import annotations

import contextlib

import click

from pallet.kernel.cli.output import emit, format_option
from pallet.kernel.errors import PalletError, UsageError


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
    rows.append(build_cache_row(engine, images))
    rows.append(debris_row(engine))
    return rows


def debris_row(engine) -> dict:
    """Temp files and half-made objects: those of running commands are active, a killed one's reclaimable."""
    from pallet.kernel import debris, lifecycle

    try:
        items = debris.find(engine, lifecycle.image_store(engine))
    except PalletError:
        items = []
    return {"Type": "Debris", "TotalCount": len(items), "Active": sum(i.live for i in items),
            "Size": sum(i.size for i in items), "Reclaimable": sum(i.size for i in items if not i.live)}


def build_cache_row(engine, images) -> dict:
    """The build cache's entries; those whose layer an image holds are active (``builder prune`` keeps them)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.build.cache import BuildCache
    from pallet.kernel.images import manifest as mf

    try:
        store = lifecycle.image_store(engine)
    except PalletError:
        return {"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": 0, "Reclaimable": 0}
    entries = BuildCache(engine, store).entries()
    in_images = set()
    for record in images:
        with contextlib.suppress(PalletError):
            in_images.update(d.digest for d in mf.parse_manifest(store.blobs.read(record.manifest_digest)).layers)
    active = [e for e in entries if e.digest in in_images]
    return {"Type": "Build Cache", "TotalCount": len(entries), "Active": len(active),
            "Size": sum(e.size for e in entries), "Reclaimable": sum(e.size for e in entries if e not in active)}


@click.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage.")
@format_option
@click.pass_obj
def df(engine, verbose, fmt):
    """Show pallet disk usage."""
    from pallet.kernel.humanize import size

    engine.plugins.load("storage", "runtime")
    if verbose:
        verbose_usage(engine)
        return
    rows = []
    for row in disk_usage(engine):
        percent = f" ({100 * row['Reclaimable'] // row['Size']}%)" if row["Size"] else ""
        rows.append({**row, "Size": size(row["Size"]), "Reclaimable": size(row["Reclaimable"]) + percent})
    emit(rows, [("TYPE", "Type"), ("TOTAL", "TotalCount"), ("ACTIVE", "Active"), ("SIZE", "Size"),
                ("RECLAIMABLE", "Reclaimable")], fmt=fmt)


def verbose_usage(engine) -> None:
    """Docker's ``system df -v``: one table per kind; an image's shared size is what other images hold too."""
    from collections import Counter

    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.humanize import since, size

    containers = [lifecycle.refresh(engine, r) for r in ContainerStore(engine).all()]
    try:
        store = lifecycle.image_store(engine)
        images = store.all()
    except PalletError:
        store, images = None, []
    layer_users = Counter(chain for image in images for chain in set(image.layers))
    rows = []
    for image in images:
        shared = sum(store.layer(c).size for c in set(image.layers) if layer_users[c] > 1)
        for tag in image.repo_tags or ["<none>:<none>"]:
            repository, _sep, name = tag.rpartition(":")
            rows.append({"Repository": repository, "Tag": name, "ID": image.short_id,
                         "CreatedSince": since(image.created), "Size": size(image.size or 0),
                         "SharedSize": size(shared), "UniqueSize": size((image.size or 0) - shared),
                         "Containers": sum(c.image_id == image.id for c in containers)})
    click.echo("Images space usage:\n")
    emit(rows, [("REPOSITORY", "Repository"), ("TAG", "Tag"), ("IMAGE ID", "ID"), ("CREATED", "CreatedSince"),
                ("SIZE", "Size"), ("SHARED SIZE", "SharedSize"), ("UNIQUE SIZE", "UniqueSize"),
                ("CONTAINERS", "Containers")])
    volumes = []
    with contextlib.suppress(PalletError):
        volume_store = lifecycle.volume_store(engine)
        volumes = [(v, volume_store) for v in volume_store.all()]
    mounted = Counter(m["Source"] for c in containers for m in c.host_config.get("Mounts") or [] if m["Type"] == "volume")
    rows = [{"ID": c.short_id, "Image": c.image_ref, "Command": " ".join(
                (c.config.get("Entrypoint") or []) + (c.config.get("Cmd") or []))[:20],
             "LocalVolumes": sum(1 for m in c.host_config.get("Mounts") or [] if m["Type"] == "volume"),
             "Size": size(_container_size(engine, c)), "RunningFor": _ago(c.created), "Status": c.status,
             "Names": c.name} for c in containers]
    click.echo("\nContainers space usage:\n")
    emit(rows, [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("LOCAL VOLUMES", "LocalVolumes"),
                ("SIZE", "Size"), ("CREATED", "RunningFor"), ("STATUS", "Status"), ("NAMES", "Names")])
    click.echo("\nLocal Volumes space usage:\n")
    emit([{"Name": v.name, "Links": mounted[v.name], "Size": size(vs.size(v))} for v, vs in volumes],
         [("VOLUME NAME", "Name"), ("LINKS", "Links"), ("SIZE", "Size")])
    click.echo("\nBuild cache usage: 0B\n")
    emit([], [("CACHE ID", "ID"), ("CACHE TYPE", "Type"), ("SIZE", "Size"), ("CREATED", "Created"),
              ("LAST USED", "LastUsed"), ("USAGE", "Usage"), ("SHARED", "Shared")])
    from pallet.kernel import debris

    items = debris.find(engine, store) if store is not None else []
    if not items:  # a clean root prints Docker's four sections, as scripts reading them expect
        return
    click.echo("\nDebris space usage:\n")
    emit([{"Name": i.key, "What": i.what, "Owner": i.owner, "InProgress": "yes" if i.live else "no",
           "Size": size(i.size)} for i in items],
         [("NAME", "Name"), ("WHAT", "What"), ("PID", "Owner"), ("IN PROGRESS", "InProgress"), ("SIZE", "Size")])


def _ago(created: float) -> str:
    import time

    from pallet.kernel.humanize import duration

    return f"{duration(time.time() - created)} ago"


def _prune_filters(filters) -> tuple[list[str], float | None]:
    """``--filter`` of system prune: the ``label`` values and the ``until`` time (Unix seconds)."""
    from pallet.kernel import events
    from pallet.kernel.cli.container_list import parse_filters

    labels, until = [], None
    for key, value in parse_filters(filters):
        if key == "label":
            labels.append(value)
        elif key == "until":
            if until is not None:
                raise UsageError("more than one until filter specified")
            try:
                until = events.parse_time(value)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            raise UsageError(f"invalid filter '{key}'")
    return labels, until


def _newer(created, until: float | None) -> bool:
    """Created after ``until`` (kept by an until filter); ``created`` is Unix seconds or RFC 3339."""
    if until is None:
        return False
    from pallet.kernel import events

    try:
        return events.parse_time(str(created)) > until if created else False
    except ValueError:
        return False


def _labelled(labels: dict | None, wanted: list[str]) -> bool:
    from pallet.kernel.cli.container_list import label_match

    return all(label_match(labels or {}, want) for want in wanted)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones.")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, metavar="label=KEY[=VALUE]|until=TIME",
              help="Prune only what has this label (repeat: all must match), or what was created before TIME "
                   "(Unix seconds, RFC 3339 or a duration like 24h; not with --volumes, as Docker's).")
@click.pass_obj
def prune(engine, all_, volumes, force, filters):
    """Remove stopped containers, unused networks, dangling (or, with -a, all unused) images, build cache
    and the debris of interrupted commands."""
    from pallet.kernel import debris, lifecycle
    from pallet.kernel.build import executor
    from pallet.kernel.build.cache import BuildCache
    from pallet.kernel.cli.container_ops import prune_containers
    from pallet.kernel.cli.image import prune_images
    from pallet.kernel.cli.network import prune_networks
    from pallet.kernel.network.store import NetworkStore
    from pallet.kernel.humanize import size

    labels, until = _prune_filters(filters)
    if until is not None and volumes:
        raise UsageError("invalid filter 'until' for volumes: prune volumes without it")
    if not force:
        items = ["all stopped containers", "all networks not used by at least one container",
                 "all images without at least one container associated to them" if all_ else "all dangling images",
                 "all build cache" if all_ else "unused build cache",
                 "the debris of interrupted commands (temporary files, half-made layers)"]
        if volumes:
            items.append("all anonymous volumes not used by at least one container")
        text = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items)
        if not click.confirm(text + "\nAre you sure you want to continue?"):
            return
    engine.plugins.load("storage", "security", "runtime")
    # Measured first: the steps below take the image store's lock, which already sweeps some of it.
    store = lifecycle.image_store(engine)
    pending = debris.unheld(engine, store)
    containers, reclaimed = prune_containers(engine, [("label", value) for value in labels],
                                             keep=lambda record: _newer(record.created, until))
    sections = [("Deleted Containers:", containers),
                ("Deleted Networks:", prune_networks(NetworkStore(engine), [], keep=lambda record: _newer(
                    record.created, until) or not _labelled(record.labels, labels)))]
    if volumes:
        removed, freed = lifecycle.volume_store(engine).prune(False, dict(v.partition("=")[::2] for v in labels))
        sections.append(("Deleted Volumes:", removed))
        reclaimed += freed
    with store.locked():
        deleted, freed = prune_images(engine, store, all_, before_debris=pending, keep=lambda record: _newer(
            record.created, until) or not _labelled(record.runtime_config.get("Labels"), labels))
    sections.append(("Deleted Images:", [f"{kind.lower()}: {what}" for kind, what in deleted]))
    reclaimed += freed
    executor.clean_stale(engine)
    removed_keys: list[str] = []
    if not labels:   # build cache records carry no labels: a label filter matches none (as BuildKit's)
        removed_keys, freed = BuildCache(engine, lifecycle.image_store(engine)).prune(
            keep_used_by_images=not all_, older_than=until)
        reclaimed += freed
    for title, lines in sections:
        if lines:
            click.echo("\n".join([title, *lines]) + "\n")
    if removed_keys:
        from pallet.kernel.cli.build import deleted_cache_text

        click.echo(deleted_cache_text(removed_keys))
    click.echo(f"Total reclaimed space: {size(reclaimed)}")
