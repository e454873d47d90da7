"""``pallet storage migrate``: move every image layer and stopped container layer to another storage driver.

The move is trustworthy by construction:
- a journal (``<root>/storage-migration.json``) records the source, the target and every layer
  already moved and verified; while it exists the engine refuses to use storage, and running
  the command again resumes where a crash (even ``kill -9``) stopped it;
- image layers are replayed from the image store's blobs and their uncompressed digest must equal
  the diff id the store recorded; a layer without a blob, and every container layer, is copied
  through ``diff`` -> ``apply_diff``; every moved layer's whole tree (paths, types, modes,
  owners, sizes, contents, link targets, devices, xattrs) must then equal the source's;
- the root switches to the target only when everything is in place, and the source's data is
  deleted only after that (or kept, ``--keep-old``, as a backup that driver selection ignores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pallet.kernel.errors import Conflict, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write, atomic_write_json, locked
from pallet.kernel.storage import MIGRATION_JOURNAL as JOURNAL

KEPT = "storage-kept-old"                  # drivers whose data --keep-old left behind, one per line
KILL_HOOK = "PALLET_TEST_MIGRATE_KILL_AFTER"  # tests: SIGKILL ourselves after N moved layers


@dataclass
class Journal:
    source: str
    target: str
    keep_old: bool = False
    target_options: dict = field(default_factory=dict)   # resume and abort need the same target
    phase: str = "copy"                    # copy -> cleanup
    done: list = field(default_factory=list)
    started: float = 0.0

    @classmethod
    def load(cls, root: Path) -> Journal | None:
        try:
            return cls(**json.loads((root / JOURNAL).read_text()))
        except FileNotFoundError:
            return None

    def save(self, root: Path) -> None:
        atomic_write_json(root / JOURNAL, asdict(self))


@dataclass
class Step:
    """One layer to move: an image layer (``chain_id`` set) or a container's read-write layer."""

    layer_id: str
    parent: str | None
    what: str
    chain_id: str | None = None
    container: str | None = None
    storage_opts: dict | None = None


@dataclass
class Report:
    source: str
    target: str
    layers: int = 0
    containers: int = 0
    bytes: int = 0
    seconds: float = 0.0
    resumed: bool = False
    kept_old: bool = False
    notes: list = field(default_factory=list)


def kept_drivers(root: Path) -> list[str]:
    try:
        return [line.strip() for line in (Path(root) / KEPT).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def in_progress(root: Path) -> Journal | None:
    return Journal.load(Path(root))


# --- drivers -----------------------------------------------------------------------------------
def configured_options(engine, name: str) -> dict[str, str]:
    """The config file's options for ``name``, without the ``--storage-opt`` flags (those describe the target)."""
    section = engine.config.section("storage").get("options", {}).get(name, {})
    return {str(k): str(v) for k, v in section.items()}


def source_driver_name(engine) -> str:
    """The driver whose data is to move: the recorded one, else the only one with data."""
    recorded = engine.recorded_storage_driver()
    present = engine.storage_data_present()
    if recorded and (recorded in present or not present):
        return recorded
    if len(present) == 1:
        return present[0]
    if not present:
        raise PalletError(f"{engine.root} holds no storage driver data: there is nothing to migrate")
    raise Conflict(f"{engine.root} holds data of several storage drivers ({', '.join(present)}) and none is "
                   "recorded as in use; remove all but one first")


# --- what to move ------------------------------------------------------------------------------
def running_containers(engine) -> list[str]:
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.lifecycle import refresh

    return sorted(r.name or r.id[:12] for r in ContainerStore(engine).all() if refresh(engine, r).running)


def plan(engine, source_name: str) -> list[Step]:
    """Image layers in parent order, then every container's read-write layer on the source."""
    steps: list[Step] = []
    seen: set[str] = set()
    from pallet.kernel.containers import ContainerStore
    from pallet.kernel.images import ImageStore

    for image in sorted(ImageStore(engine).all(), key=lambda r: r.id):
        name = image.repo_tags[0] if image.repo_tags else image.id.split(":", 1)[1][:12]
        parent = None
        for chain_id in image.layers:
            layer_id = chain_id.split(":", 1)[1]
            if layer_id not in seen:
                seen.add(layer_id)
                steps.append(Step(layer_id, parent, f"image {name}", chain_id=chain_id))
            parent = layer_id
    for record in sorted(ContainerStore(engine).all(), key=lambda r: r.created):
        if record.storage_driver and record.storage_driver != source_name:
            continue
        opts = (record.host_config or {}).get("StorageOpt") or None
        steps.append(Step(record.id, record.image_top_layer, f"container {record.name}",
                          container=record.id, storage_opts=opts))
    return steps


# --- verification ------------------------------------------------------------------------------
def tree_digest(root: str) -> str:
    """A digest of everything a layer's tree holds, so two drivers' copies can be compared.

    Directory mtimes are left out (extracting children changes them); other mtimes count to the
    second, the precision tar headers carry.
    """
    hasher = hashlib.sha256()
    for rel, path, st in _walk(root):
        mode = st.st_mode
        fields = [rel, oct(mode), str(st.st_uid), str(st.st_gid)]
        if stat.S_ISREG(mode):
            fields += [str(st.st_size), str(int(st.st_mtime)), _file_digest(path)]
        elif stat.S_ISLNK(mode):
            fields += [os.readlink(path), str(int(st.st_mtime))]
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            fields += [str(os.major(st.st_rdev)), str(os.minor(st.st_rdev))]
        fields += [f"{k}={v.hex()}" for k, v in sorted(_xattrs(path).items())]
        hasher.update("\0".join(fields).encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()


def _walk(root: str, rel: str = ""):
    base = os.path.join(root, rel) if rel else root
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        name = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        yield name, entry.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, name)


def _file_digest(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # no xattr support (zfs-fuse): nothing stored, nothing to compare
        return {}
    found = {}
    for name in names:
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue  # overlay2's own bookkeeping, not layer content
        with contextlib.suppress(OSError):
            found[name] = os.getxattr(path, name, follow_symlinks=False)
    return found


def _digest_of_layer(driver, layer_id: str) -> str:
    from pallet.kernel.storage.naive import mounted

    with mounted(driver, layer_id) as root:
        return tree_digest(root)


# --- moving ------------------------------------------------------------------------------------
def _move(engine, source, target, step: Step) -> int:
    """Put ``step``'s layer on the target and verify it; return the bytes applied."""
    from pallet.kernel.storage.archive import ChunkReader

    if target.exists(step.layer_id):
        target.remove(step.layer_id)  # a half-moved layer from before a crash: nothing vouches for it
    if step.container:
        target.create_rw(step.layer_id, step.parent, step.storage_opts)
    applied = None
    if step.chain_id:
        applied = _replay_blob(engine, target, step)
    if applied is None:
        if not source.exists(step.layer_id):
            if step.container:
                raise PalletError(f"{step.what} has no read-write layer on the old driver; remove it "
                                  f"(pallet rm {step.container[:12]}) and run the migration again")
            raise PalletError(f"layer {step.layer_id} ({step.what}) is missing from the old driver and "
                              "the image store has no blob for it")
        chunks = source.diff(step.layer_id, step.parent)
        try:
            applied = target.apply_diff(step.layer_id, step.parent, ChunkReader(chunks))
        finally:
            chunks.close()
    if source.exists(step.layer_id):
        before, after = _digest_of_layer(source, step.layer_id), _digest_of_layer(target, step.layer_id)
        if before != after:
            raise PalletError(f"layer {step.layer_id} ({step.what}) differs after the move "
                              f"(tree digest {before[:12]} on the source, {after[:12]} on the target); "
                              "nothing was switched or deleted")
    return applied


def _replay_blob(engine, target, step: Step) -> int | None:
    """Apply the image layer from its blob, checking the diff id; None when the store has no blob."""
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import layers as layerlib
    from pallet.kernel.images import manifest as mf

    store = ImageStore(engine)
    try:
        record = store.layer(step.chain_id)
    except PalletError:
        return None
    blob = store.blobs.path(record.blob)
    if not blob.is_file():
        return None
    compression = mf.LAYER_COMPRESSION.get(record.media_type)
    if compression is None and record.media_type not in mf.LAYER_COMPRESSION:
        compression = layerlib.detect_compression(blob)
    with layerlib.uncompressed(blob, compression) as stream:
        reader = layerlib.HashingReader(stream)
        target.apply_diff(step.layer_id, step.parent, reader)
        reader.drain()
    if reader.digest != record.diff_id:
        raise PalletError(f"layer {step.chain_id} ({step.what}) does not match its diff id after the move: "
                          f"expected {record.diff_id}, got {reader.digest}; nothing was switched or deleted")
    return reader.count


def _remove_all(driver) -> None:
    """Every layer the driver holds. The order of parents and children is unknown here, so a layer that
    cannot go yet (a child still needs it) is retried in the next pass."""
    for _ in range(4):
        left = driver.layers()
        if not left:
            break
        for layer_id in reversed(left):
            with contextlib.suppress(PalletError, OSError):
                driver.remove(layer_id)
    left = driver.layers()
    if left:
        raise PalletError(f"could not remove {len(left)} layers of the old driver (first: {left[0]})")
    driver.cleanup()


def _mounts_under(home: Path) -> list[str]:
    prefix = os.path.realpath(home)
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _delete_home(home: Path) -> None:
    if not home.exists():
        return
    busy = _mounts_under(home)
    if busy:
        raise PalletError(f"cannot delete {home}: {busy[0]} is still mounted")
    shutil.rmtree(home)


def _wipe_kept(engine, name: str) -> None:
    """A backup left by --keep-old is stale once we migrate back onto that driver: drop it first."""
    driver = engine.open_driver("storage", name, engine.config.storage_options(name))
    _remove_all(driver)
    _delete_home(engine.storage_home(name))
    atomic_write(engine.root / KEPT, "".join(f"{n}\n" for n in kept_drivers(engine.root) if n != name).encode())


# --- the command -------------------------------------------------------------------------------
def abort(engine, say=print) -> str:
    """Give up an unfinished migration: delete what reached the target, keep using the source."""
    root = engine.root
    with locked(root / "storage-migration.lock"):
        journal = Journal.load(root)
        if journal is None:
            raise PalletError("no storage migration is in progress")
        if journal.phase != "copy":
            raise Conflict(f'the migration to "{journal.target}" already switched the root; finish it with '
                           f'"pallet storage migrate --to {journal.target}"')
        say(f"Deleting what was moved to {journal.target}")
        _remove_all(engine.open_driver("storage", journal.target, journal.target_options))
        _delete_home(root / journal.target)
        (root / JOURNAL).unlink()
        return journal.source


def migrate(engine, target_name: str, keep_old: bool = False, say=print) -> Report:
    root = engine.root
    engine.plugins.driver("storage", target_name)  # unknown name -> usage error before anything else
    with locked(root / "storage-migration.lock"):
        journal = Journal.load(root)
        resumed = journal is not None
        if journal and journal.target != target_name:
            raise Conflict(f'a migration from "{journal.source}" to "{journal.target}" is in progress; '
                           f'finish it with "pallet storage migrate --to {journal.target}"')
        if journal is None:
            source_name = source_driver_name(engine)
            if source_name == target_name:
                raise UsageError(f'{root} already uses storage driver "{target_name}"')
            running = running_containers(engine)
            if running:
                raise Conflict(f"cannot migrate while containers are running ({', '.join(running)}); stop them first")
            if target_name in kept_drivers(root):
                _wipe_kept(engine, target_name)
            elif (root / target_name).exists() and any((root / target_name).iterdir()):
                raise Conflict(f'{root / target_name} already holds data of "{target_name}"; remove it first')
            options = engine.config.storage_options(target_name)
            target = engine.open_driver("storage", target_name, options)
            journal = Journal(source_name, target_name, keep_old, options, started=time.time())
            journal.save(root)  # from here on the engine refuses storage use until we finish
        else:
            keep_old = journal.keep_old
            target = engine.open_driver("storage", target_name, journal.target_options)
        source = engine.open_driver("storage", journal.source, configured_options(engine, journal.source))
        report = Report(journal.source, target_name, resumed=resumed, kept_old=keep_old)
        started = time.monotonic()
        if journal.phase == "copy":
            _copy(engine, source, target, journal, report, say)
            journal.phase = "cleanup"
            journal.save(root)
        if keep_old:
            source.cleanup()
            kept = [n for n in kept_drivers(root) if n != journal.source] + [journal.source]
            atomic_write(root / KEPT, "".join(f"{n}\n" for n in kept).encode())
        else:
            say(f"Deleting the data of {journal.source}")
            _remove_all(source)
            _delete_home(root / journal.source)
        (root / JOURNAL).unlink()
        report.seconds = time.monotonic() - started
        configured = engine.config.storage_driver_flag or engine.config.storage_driver_configured
        if configured and configured != target_name:
            report.notes.append(f'storage driver "{configured}" is still chosen by the flag, PALLET_STORAGE_DRIVER '
                                f'or {engine.config.config_path}; change it to "{target_name}"')
        return report


def _copy(engine, source, target, journal: Journal, report: Report, say) -> None:
    from pallet.kernel.containers import ContainerStore

    kill_after = int(os.environ.get(KILL_HOOK, "0") or 0)
    moved_now = 0
    while True:  # again until stable: nothing may appear on the source that we did not move
        steps = [s for s in plan(engine, journal.source) if s.layer_id not in journal.done]
        if not steps:
            break
        say(f"Moving {len(steps)} layers from {journal.source} to {journal.target}")
        for step in steps:
            report.bytes += _move(engine, source, target, step)
            journal.done.append(step.layer_id)
            journal.save(engine.root)
            report.layers += 1
            report.containers += bool(step.container)
            say(f"  {step.layer_id[:12]}  {step.what}: moved and verified")
            moved_now += 1
            if kill_after and moved_now >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    running = running_containers(engine)
    if running:
        raise Conflict(f"containers were started during the migration ({', '.join(running)}); stop them and "
                       f'run "pallet storage migrate --to {journal.target}" again')
    # The switch: from here the root uses the target; the source is only a copy to delete.
    atomic_write(engine.root / "storage-driver", (journal.target + "\n").encode())
    store = ContainerStore(engine)
    for record in store.all():
        if record.storage_driver in ("", journal.source):
            store.update(record.id, storage_driver=journal.target)
