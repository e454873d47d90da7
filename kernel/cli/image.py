"""``pallet image …`` and the everyday shortcuts (pull, push, images, rmi, tag, save, load, import, history, login)."""

from __future__ import annotations

import fnmatch
import json
import sys

import click

from pallet.kernel.cli.output import emit, format_option, inspect_format_option, json_option
from pallet.kernel.cli.scan import sbom, scan
from pallet.kernel.cli.trust import (GoBoolCommand, content_trust_option, prepare_signing, sign, sign_options,
                                     sign_pushed, tls_verify_option, trust, trust_options, verify)
from pallet.kernel.errors import Conflict, PalletError, UsageError


def _store(ctx):
    from pallet.kernel.images import ImageStore
    return ImageStore(ctx.obj)


def _containers_using(engine) -> dict[str, list[str]]:
    """image id -> ids of containers created from it."""
    from pallet.kernel.containers import ContainerStore

    using: dict[str, list[str]] = {}
    for container in ContainerStore(engine).all():
        using.setdefault(container.image_id, []).append(container.id)
    return using


def _running_users(engine, container_ids: list[str]) -> list[str]:
    """The running ones among ``container_ids`` (Docker never removes the image of a running container)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    store = ContainerStore(engine)
    return [cid for cid in container_ids if lifecycle.refresh(engine, store.load(cid)).running]


def platform_option(help_text: str, multiple: bool = False):
    """Docker's ``--platform os[/arch[/variant]]``; pallet keeps one platform per image, so it selects or checks."""
    def lowered(_ctx, _param, value):
        from pallet.kernel.policyopts import parse_platform

        return tuple(parse_platform(v) for v in value) if multiple else parse_platform(value or "")
    return click.option("--platform", "platform", metavar="OS[/ARCH[/VARIANT]]", multiple=multiple,
                        callback=lowered, help=help_text)


def _of_platform(record, name: str, platform: str):
    from pallet.kernel.lifecycle import check_platform

    return check_platform(record, name, platform)


def _container_ids(engine) -> set[str]:
    """Every container id (their read-write layers live in the driver)."""
    from pallet.kernel.containers import ContainerStore

    return {container.id for container in ContainerStore(engine).all()}


@click.group("image", context_settings={"help_option_names": ["-h", "--help"]})
def image():
    """Manage images."""


# --- listing and inspecting -------------------------------------------------------------

def _image_rows(records, digests: bool, no_trunc: bool) -> list[dict]:
    from pallet.kernel import humanize
    from pallet.kernel.images import reference as refs

    rows = []
    for record in records:
        image_id = record.id if no_trunc else record.short_id
        digest_by_repo = {}
        for entry in record.repo_digests:
            name, _, digest = entry.partition("@")
            digest_by_repo[refs.parse(name, default_tag=False).familiar_name] = digest
        names = record.repo_tags or ["<none>:<none>"]
        for name in names:
            repo, _, tag = name.rpartition(":")
            rows.append({"Repository": repo, "Tag": tag, "Digest": digest_by_repo.get(repo, "<none>"),
                         "ID": image_id, "CreatedSince": humanize.since(record.created),
                         "CreatedAt": record.created, "Size": humanize.size(record.size)})
    return rows


def _filter(records, filters: tuple[str, ...]):
    from pallet.kernel.images import reference as refs

    for spec in filters:
        key, sep, value = spec.partition("=")
        if not sep:
            raise UsageError(f'bad format of filter (expected name=value): "{spec}"')
        if key == "dangling":
            if value not in ("true", "false", "1", "0"):
                raise UsageError(f'invalid filter "dangling={value}"')
            want = value in ("true", "1")
            records = [r for r in records if (not r.repo_tags) == want]
        elif key == "reference":
            def matches(record):
                for tag in record.repo_tags:
                    ref = refs.parse(tag)
                    if fnmatch.fnmatch(ref.familiar_name, value) or fnmatch.fnmatch(ref.familiar(), value):
                        return True
                return False
            records = [r for r in records if matches(r)]
        else:
            raise UsageError(f'invalid filter "{key}" (supported: dangling, reference)')
    return records


@image.command("ls")
@click.argument("repository", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (intermediate ones too).")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="FILTER", help="dangling=true|false, reference=PATTERN.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--tree", is_flag=True, help="List images as a tree: each image, its platform variants, disk usage.")
@format_option
@json_option
@click.pass_context
def ls(ctx, repository, all_, digests, filters, no_trunc, quiet, tree, fmt, as_json):
    """List images."""
    records = _filter(_store(ctx).all(), filters + ((f"reference={repository}",) if repository else ()))
    if tree:
        from pallet.kernel.cli.image_tree import print_tree

        for flag, given in (("--quiet", quiet), ("--no-trunc", no_trunc), ("--show-digest", digests),
                            ("--format", fmt or as_json)):
            if given:
                raise UsageError(f"{flag} is not yet supported with --tree")
        print_tree(_store(ctx), records, _containers_using(ctx.obj), all_)
        return
    if quiet:
        seen = []
        for record in records:
            value = record.id if no_trunc else record.short_id
            if value not in seen:
                seen.append(value)
                click.echo(value)
        return
    columns = [("REPOSITORY", "Repository"), ("TAG", "Tag")]
    if digests:
        columns.append(("DIGEST", "Digest"))
    columns += [("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    emit(_image_rows(records, digests, no_trunc), columns, fmt, as_json)


@image.command("inspect")
@click.argument("images", nargs=-1, required=True)
@inspect_format_option
@click.pass_context
def inspect(ctx, images, fmt):
    """Display detailed information on one or more images."""
    from pallet.kernel.cli.output import render_template

    store = _store(ctx)
    documents = [store.inspect(store.resolve(name)) for name in images]
    if fmt and fmt != "json":
        for document in documents:
            click.echo(render_template(fmt, document))
    else:
        click.echo(json.dumps(documents, indent=4))


@image.command("history")
@click.argument("name")
@click.option("-H", "--human", default=True, type=bool, help="Print sizes and dates in human readable format.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@platform_option("Show history for the given platform (an image of another platform is Docker's error).")
@format_option
@json_option
@click.pass_context
def history(ctx, name, human, no_trunc, quiet, platform, fmt, as_json):
    """Show the history of an image."""
    from pallet.kernel import humanize

    store = _store(ctx)
    record = _of_platform(store.resolve(name), name, platform)
    layer_sizes = [store.layer(chain).size for chain in record.layers]
    rows = []
    for entry in reversed(record.config.get("history") or []):
        size = 0 if entry.get("empty_layer") or not layer_sizes else layer_sizes.pop()
        created_by = entry.get("created_by", "")
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"ID": "<missing>", "CreatedSince": humanize.since(entry.get("created", "")) if human
                     else entry.get("created", ""), "CreatedAt": entry.get("created", ""),
                     "CreatedBy": created_by, "Size": humanize.size(size) if human else str(size),
                     "Comment": entry.get("comment", "")})
    if rows:
        rows[0]["ID"] = record.id if no_trunc else record.short_id
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    emit(rows, [("IMAGE", "ID"), ("CREATED", "CreatedSince"), ("CREATED BY", "CreatedBy"), ("SIZE", "Size"),
                ("COMMENT", "Comment")], fmt, as_json)


# --- tags and removal -------------------------------------------------------------------

@image.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx, source, target):
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    from pallet.kernel import events

    store = _store(ctx)
    store.tag(source, target)
    events.emit(ctx.obj, "image", "tag", store.resolve(target).id, {"name": target})


@image.command("rm")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents (accepted for compatibility).")
@platform_option("Remove the image only if it is of this platform (pallet keeps one platform per image).",
                 multiple=True)
@click.pass_context
def rm(ctx, images, force, no_prune, platform):
    """Remove one or more images."""
    if len(platform) > 1:
        raise PalletError("multiple platforms are not supported")
    store = _store(ctx)
    errors = []
    for name in images:
        try:
            if platform:
                _of_platform(store.resolve(name), name, platform[0])
            with store.locked():   # containers are created under it too (their image lease)
                steps = remove_image(ctx.obj, store, name, force)
            for kind, what in steps:
                click.echo(f"{kind}: {what}")
        except PalletError as exc:
            errors.append(str(exc))
    if errors:
        for message in errors[:-1]:
            click.echo(f"Error: {message}", err=True)
        raise PalletError(errors[-1])


def remove_image(engine, store, name: str, force: bool) -> list[tuple[str, str]]:
    """Docker's ``rmi NAME``: untag or delete; the ("Untagged"|"Deleted", what) steps, also for the API.
    The caller holds the store lock, so no container appears meanwhile (its image lease)."""
    from pallet.kernel import events, faults
    from pallet.kernel.images import reference as refs

    steps = []
    record = store.resolve(name)
    used_by = _containers_using(engine).get(record.id, [])
    by_tag = bool(record.repo_tags) and not refs.looks_like_id(name) or name in record.repo_tags
    if by_tag and len(record.repo_tags) > 1 and not force:
        store.untag(name)
        events.emit(engine, "image", "untag", record.id, {"name": name})
        return [("Untagged", refs.parse(name).familiar())]
    if not by_tag and len(record.repo_tags) > 1 and not force:
        raise Conflict(f"unable to delete {record.short_id} (must be forced) - image is referenced in "
                       "multiple repositories")
    leased = store.leases.images().get(record.id)
    if leased:
        raise Conflict(f"conflict: unable to delete {name} (cannot be forced) - image is being used by container "
                       f"{leased[0][:12]} being created")
    running = _running_users(engine, used_by) if force else []
    if running:
        raise Conflict(f"conflict: unable to delete {name} (cannot be forced) - image is being used by "
                       f"running container {running[0][:12]}")
    if used_by and not force:
        raise Conflict(f"unable to remove repository reference \"{name}\" (must force) - container "
                       f"{used_by[0][:12]} is using its referenced image {record.short_id}")
    faults.point("rmi.checked")
    for tagged in record.repo_tags:
        store.untag(tagged)
        events.emit(engine, "image", "untag", record.id, {"name": tagged})
        steps.append(("Untagged", tagged))
    if used_by:
        return steps  # forced: the image stays (untagged) for the containers that use it
    steps += [("Deleted", deleted) for deleted in store.remove(record.id)]
    engine.plugins.broadcast("pallet_image_removed", image_id=record.id)
    events.emit(engine, "image", "delete", record.id, {"name": name})
    return steps


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx, all_, force):
    """Remove unused images (and the debris of interrupted commands)."""
    from pallet.kernel import humanize

    if not force:
        what = "images without at least one container associated to them" if all_ else "dangling images"
        if not click.confirm(f"WARNING! This will remove all {what}.\nAre you sure you want to continue?"):
            return
    from pallet.kernel import debris

    store = _store(ctx)
    pending = debris.unheld(ctx.obj, store)  # measured first: taking the lock already sweeps some
    with store.locked():   # no container is created meanwhile (they lease their image under it)
        _prune_locked(ctx, store, all_, pending)


def _prune_locked(ctx, store, all_: bool, pending) -> None:
    from pallet.kernel import humanize

    deleted, reclaimed = prune_images(ctx.obj, store, all_, before_debris=pending)
    if deleted:
        click.echo("Deleted Images:\n" + "\n".join(f"{kind.lower()}: {what}" for kind, what in deleted) + "\n")
    click.echo(f"Total reclaimed space: {humanize.size(reclaimed)}")


def prune_images(engine, store, all_: bool, keep=lambda record: False,
                 before_debris=None) -> tuple[list[tuple[str, str]], int]:
    """Remove dangling images (every unused one with ``all_``) but those ``keep`` keeps, then the root's
    debris; the ("Untagged"|"Deleted", what) steps and the bytes freed, also for the API. The caller
    holds the store lock.

    The bytes are every blob the images alone held, and the debris as measured before the caller took
    the store lock (``before_debris``: taking it already sweeps some, see :mod:`pallet.kernel.debris`),
    or as found here.
    """
    from pallet.kernel import debris

    if before_debris is None:
        before_debris = debris.unheld(engine, store)
    used = {**_containers_using(engine), **store.leases.images()}
    reclaimed, deleted = 0, []
    for record in store.all():
        if record.id in used or (record.repo_tags and not all_) or keep(record):
            continue
        for tagged in record.repo_tags:
            store.untag(tagged)
            deleted.append(("Untagged", tagged))
        before = sum(store.blobs.size(d) for d in store.blobs.digests())
        deleted += [("Deleted", item) for item in store.remove(record.id)]
        reclaimed += before - sum(store.blobs.size(d) for d in store.blobs.digests())
    gone, freed = debris.remove(engine, store, _container_ids(engine), before_debris)
    deleted += [("Deleted", f"{item.key} ({item.what})") for item in gone]
    return deleted, reclaimed + freed


# --- making images locally --------------------------------------------------------------

@image.command("build-busybox")
@click.option("-t", "--tag", "tag_", default="busybox:latest", show_default=True, help="Name the image.")
@click.option("--binary", default="/bin/busybox", show_default=True, help="A static busybox binary.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.pass_context
def build_busybox(ctx, tag_, binary, quiet):
    """Build a busybox image from the host's static busybox (no registry needed)."""
    from pathlib import Path

    from pallet.kernel.images.build import build_busybox as build

    record = build(_store(ctx), tag_, Path(binary))
    click.echo(record.id if quiet else f"Built {', '.join(record.repo_tags)} {record.id}")


@image.command("import")
@click.argument("source")
@click.argument("repository", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENV …).")
@click.option("-m", "--message", default="", help="Commit message for the imported image.")
@platform_option("Set the image's platform (os/architecture/variant in its config) [default: this host's].")
@click.pass_context
def import_(ctx, source, repository, changes, message, platform):
    """Import the contents from a tarball (file or '-') to create a filesystem image."""
    if source == "-":
        stream, close = sys.stdin.buffer, None
    else:
        try:
            stream = close = open(source, "rb")
        except OSError as exc:
            raise PalletError(f"cannot open {source}: {exc.strerror}") from None
    try:
        image_id = import_tarball(ctx.obj, stream, repository, changes, message, source, platform)
    finally:
        if close:
            close.close()
    click.echo(image_id)


def import_tarball(engine, stream, repository: str | None, changes, message: str, source: str,
                   platform: str = "") -> str:
    """A one-layer image from a rootfs tarball (plain or gzip) with ``--change`` instructions; return its id.
    The CLI's ``import`` and the API's ``fromSrc`` import here."""
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images.build import DEFAULT_PATH, maybe_decompress, parse_change

    config: dict = {"Env": [DEFAULT_PATH]}
    for change in changes:
        parse_change(change, config)
    return ImageStore(engine).commit(maybe_decompress(stream), None, config, message,
                                     [repository] if repository else [], created_by=f"import {source}",
                                     platform=platform)


@image.command("pull", cls=GoBoolCommand)
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository.")
@platform_option("Select this platform from a manifest list [default: this host's].")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@tls_verify_option()
@content_trust_option("every pull is verified by the trust policy (--signature-policy)")
@trust_options
@click.pass_context
def pull(ctx, name, all_tags, platform, quiet, tls_verify):
    """Download an image from a registry (or an oci:, docker-archive:, dir: location)."""
    from pallet.kernel.images.progress import reporter

    for pulled in pull_image(ctx.obj, name, lambda: reporter(quiet), platform or None, tls_verify, all_tags):
        click.echo(pulled)


def pull_image(engine, name: str, make_progress, platform=None, tls_verify: bool = True, all_tags: bool = False,
               credentials: dict | None = None):
    """Pull ``name`` (every tag with ``all_tags``) under the trust policy; yield what each pull stored
    (Docker's full reference, or the id for other transports). The CLI and the API both pull here;
    ``credentials`` (host -> (user, password), an API client's ``X-Registry-Auth``) win over the auth files."""
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs
    from pallet.kernel.images import transfer
    from pallet.kernel.trust.enforce import admit

    kind, location = transfer.split(engine, name)
    driver = transfer.transport(engine, kind, {"platform": platform, "tls_verify": tls_verify,
                                               "credentials": credentials})
    locations = [location]
    if all_tags:
        if kind != "docker":
            raise UsageError("--all-tags works with registries only")
        base = refs.parse(location, default_tag=False)
        locations = [str(base.with_tag(t)) for t in driver.list_tags(location)]
    store = ImageStore(engine)
    engine.storage  # choose (and refuse a wrong) storage driver before downloading anything
    for where in locations:
        admission = admit(engine, kind, where, driver)   # the trust policy, before anything is stored
        progress = make_progress()
        try:
            image_id = driver.pull(admission.location, store, progress)
        finally:
            progress.close()
        admission.stored(engine, store, image_id)
        engine.plugins.broadcast("pallet_image_pulled", reference=where, image_id=image_id)
        from pallet.kernel import events

        events.emit(engine, "image", "pull", where, {"name": where, "id": image_id})
        # Docker ends with the full reference; other transports have none, so print the id.
        yield str(refs.parse(where)) if kind == "docker" else image_id


@image.command("push", cls=GoBoolCommand)
@click.argument("name")
@click.argument("destination", required=False)
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository.")
@platform_option("Push only if the image is of this platform: pallet keeps one platform per image and pushes no "
                 "index, so the image goes as it is.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@tls_verify_option()
@content_trust_option("sign with --sign-by or --sign-by-sigstore-private-key")
@sign_options
@trust_options
@click.pass_context
def push(ctx, name, destination, all_tags, platform, quiet, tls_verify, sign_by, sigstore_key, sign_passphrase_file):
    """Upload an image to a registry (DESTINATION may be docker://, oci:, docker-archive: or dir:)."""
    from pallet.kernel.images import reference as refs
    from pallet.kernel.images import transfer

    engine = ctx.obj
    names = [name]
    if all_tags:
        if destination:
            raise UsageError("--all-tags pushes to the image's own repository: give no DESTINATION")
        kind, location = transfer.split(engine, name)
        if kind != "docker":
            raise UsageError("--all-tags works with registries only")
        repo = refs.parse(location, default_tag=False)
        if repo.tag or repo.digest:
            raise UsageError("tag can't be used with --all-tags/-a")
        names = sorted(tag for tag in _store(ctx).tags() if refs.parse(tag).name == repo.name)
        if not names:
            raise PalletError(f"An image does not exist locally with the tag: {repo.familiar_name}")
    for each in names:
        if platform:
            _of_platform(_store(ctx).resolve(each), each, platform)
        _push_one(engine, each, destination, quiet, tls_verify, sign_by, sigstore_key, sign_passphrase_file)


def _push_one(engine, name, destination, quiet, tls_verify, sign_by, sigstore_key, sign_passphrase_file) -> None:
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs
    from pallet.kernel.images import transfer
    from pallet.kernel.images.progress import reporter

    kind, location = transfer.split(engine, destination or name)
    key = None
    if sign_by or sigstore_key:
        if kind != "docker":
            raise UsageError("--sign-by and --sign-by-sigstore-private-key sign pushes to a registry (docker://)")
        ImageStore(engine).resolve(name)
        key = prepare_signing(engine, refs.parse(location), sign_by, sigstore_key, sign_passphrase_file)
    progress = reporter(quiet)
    try:
        digest = push_image(engine, name, destination or name, progress, tls_verify)
    finally:
        progress.close()
    if sign_by or sigstore_key:
        sign_pushed(engine, refs.parse(location), digest, sign_by, key, sign_passphrase_file, tls_verify)
    if quiet:
        click.echo(destination or name)
    elif kind != "docker":
        click.echo(f"Wrote {digest} to {destination or name}")


def push_image(engine, name: str, destination: str, progress, tls_verify: bool = True,
               credentials: dict | None = None) -> str:
    """Push image ``name`` to ``destination`` (any transport), its kept referrers with it; return the manifest
    digest. The CLI and the API both push here; ``credentials`` as for :func:`pull_image`."""
    from pallet.kernel import events
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs
    from pallet.kernel.images import transfer

    store = ImageStore(engine)
    record = store.resolve(name)
    kind, location = transfer.split(engine, destination)
    driver = transfer.transport(engine, kind, {"tls_verify": tls_verify, "credentials": credentials})
    digest = driver.push(record.id, location, store, progress)
    events.emit(engine, "image", "push", destination, {"name": destination, "id": record.id})
    if kind == "docker":   # SBOMs kept as referrers travel with the image
        from pallet.kernel.images import auth
        from pallet.kernel.trust import referrers

        ref = refs.parse(location)
        referrers.push(engine, ref, record.manifest_digest, tls_verify,
                       (credentials or {}).get(auth.normalise_server(ref.domain)))
    return digest


@image.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]), default="docker-archive",
              show_default=True, help="Archive format.")
@platform_option("Save only the given platform variant (an image of another platform is Docker's error).")
@click.pass_context
def save(ctx, images, output, fmt, platform):
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from pallet.kernel.images import archive

    if output is None and sys.stdout.isatty():
        raise PalletError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    store = _store(ctx)
    records = [(name, store.resolve(name)) for name in images]
    for name, record in records:
        if platform and not _platform_matches(record, platform):
            raise PalletError(f"no suitable export target found for platform {platform}")
    archive.save(store, records, output, fmt)


def _platform_matches(record, platform: str) -> bool:
    from pallet.kernel.images import manifest as mf

    return mf.platform_matches(mf.config_platform(record.config), platform)


@image.command("load")
@click.option("-i", "--input", "input_", default=None, help="Read from tar archive file, instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@platform_option("Load only the given platform variant (others in the archive are skipped, as Docker does).")
@trust_options
@click.pass_context
def load(ctx, input_, quiet, platform):
    """Load images from a tar archive (docker-archive or oci-archive)."""
    from pallet.kernel.images import archive

    from pallet.kernel.trust.enforce import admit

    store = _store(ctx)
    ctx.obj.storage
    admit(ctx.obj, "docker-archive", input_ or "/dev/stdin")   # archives carry no signatures: only accept/reject rules pass
    loaded = archive.load(store, input_, platform)
    if not quiet:
        for line in loaded:
            click.echo(line)


# --- credentials ------------------------------------------------------------------------

@image.command("login", cls=GoBoolCommand)
@click.argument("server", required=False)
@click.option("-u", "--username", default=None, help="Username.")
@click.option("-p", "--password", default=None, help="Password.")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@tls_verify_option()
@click.pass_context
def login(ctx, server, username, password, password_stdin, tls_verify):
    """Log in to a registry (credentials are checked, then stored in the auth file)."""
    from pallet.kernel.images import auth
    from pallet.kernel.images.registry import RegistryClient

    server = auth.normalise_server(server or "docker.io")
    if password_stdin:
        if password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\n")
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    client = RegistryClient(ctx.obj.config, server, tls_verify=tls_verify, credentials=(username, password))
    client.check_login()
    path = auth.store_credentials(server, username, password)
    click.echo(f"Login Succeeded (credentials in {path})")


@image.command("logout")
@click.argument("server", required=False)
@click.pass_context
def logout(ctx, server):
    """Log out from a registry."""
    from pallet.kernel.images import auth

    server = auth.normalise_server(server or "docker.io")
    if not auth.remove_credentials(server):
        click.echo(f"Not logged in to {server}")  # as Docker: nothing to do is not a failure
        return
    click.echo(f"Removing login credentials for {server}")



# Docker's aliases for the group's subcommands.
image.add_command(ls, "list")
image.add_command(rm, "remove")
image.add_command(trust)
image.add_command(sign)
image.add_command(verify)
image.add_command(sbom)
image.add_command(scan)

from pallet.kernel.cli.build import build as _build  # noqa: E402  (pallet image build = pallet build)

image.add_command(_build, "build")
