"""The image store under ``<root>/images``: blobs, image and layer records, tags; unpacking through the storage driver.

Layout::

    images/blobs/sha256/<hex>      manifests, indexes, configs, layer blobs (verified before visible)
    images/records/images/<hex>    ImageRecord per image (hex of the config digest = image id)
    images/records/layers/<hex>    LayerRecord per chain id
    images/tags.json               {"docker.io/library/busybox:latest": "sha256:<image id>"}
    images/lock                    flock held by every mutation

A mutation runs in a :class:`Transaction`: blobs it adds and layers it unpacks are removed
again if it fails, so a failed pull leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

from pallet.kernel import faults
from pallet.kernel.errors import Conflict, NotFound, PalletError
from pallet.kernel import fsutil
from pallet.kernel.fsutil import atomic_write_json, locked
from pallet.kernel.images import layers as layerlib
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.blobs import BlobStore, DigestMismatch
from pallet.kernel.images.leases import Leases
from pallet.kernel.images.records import ImageRecord, LayerRecord, read_image, read_layer, write_image, write_layer


# Lock depth per (thread, lock path): two ImageStore objects of one root in one thread share the
# lock instead of deadlocking on their two flocks (rmi checks containers, which may open a store).
_held = threading.local()


# Layers unpacked at once on a driver with ``parallel_apply``: each is a download follower, an inflate
# thread and an extraction, so a few already keep two cores and the disk busy.
def unpack_jobs() -> int:
    """PALLET_UNPACK_JOBS, read per pull (not at import: a resident engine's worker gets its env later)."""
    return int(os.environ.get("PALLET_UNPACK_JOBS", "3") or 3)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Transaction:
    """What one mutation added, so it can be undone; blob writes go through it."""

    def __init__(self, store: ImageStore):
        self.store = store
        self.new_blobs: list[str] = []
        self.new_layers: list[str] = []
        self.journal = store.journal_dir / f"{os.getpid()}-{os.urandom(4).hex()}"

    def note(self, kind: str, name: str) -> None:
        """Journal what this transaction adds, before it is added: if the process is killed, the next
        command that takes the store lock rolls it back (:meth:`ImageStore.recover`)."""
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal, "a") as handle:
            handle.write(f"{kind} {name}\n")

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()

    def has_blob(self, digest: str) -> bool:
        return self.store.blobs.has(digest)

    def ingest(self, chunks, expected: str | None = None, size: int | None = None, on_chunk=None,
               on_open=None) -> str:
        existed = expected is not None and self.store.blobs.has(expected)
        if expected and not existed and expected not in self.new_blobs:
            self.note("blob", expected)   # before it can exist: a kill after the rename is rolled back too
        digest = self.store.blobs.ingest(chunks, expected, size, on_chunk, on_open)
        if not existed and digest not in self.new_blobs and (expected or not self._referenced(digest)):
            self.new_blobs.append(digest)
            if not expected:
                self.note("blob", digest)
        return digest

    def adopt(self, tmp: str, digest: str) -> None:
        """Publish a blob staged outside the lock (:meth:`BlobStore.stage`), journalled like :meth:`ingest`."""
        if self.store.blobs.has(digest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            return
        if digest not in self.new_blobs:
            self.note("blob", digest)
            self.new_blobs.append(digest)
        self.store.blobs.adopt(tmp, digest)

    def ingest_file(self, source, expected: str | None = None, size: int | None = None, on_chunk=None) -> str:
        return self.ingest(iter(lambda: source.read(1 << 20), b""), expected, size, on_chunk)

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        return self.ingest([data], expected, len(data) if expected else None)

    def _referenced(self, digest: str) -> bool:
        return digest in self.store.live_blobs()

    def rollback(self) -> None:
        store = self.store
        for chain_id in reversed(self.new_layers):
            with contextlib.suppress(Exception):
                store.driver.remove(layerlib.layer_id(chain_id))
            with contextlib.suppress(FileNotFoundError):
                store.layer_path(chain_id).unlink()
        for digest in self.new_blobs:
            store.blobs.remove(digest)


class ImageStore:
    """Images of one pallet root. ``resolve``, ``ensure_layers`` and ``commit`` are what containers use."""

    def __init__(self, engine):
        self.engine = engine
        self.root = Path(engine.root) / "images"
        self.blobs = BlobStore(self.root)
        self.images_dir = self.root / "records" / "images"
        self.layers_dir = self.root / "records" / "layers"
        self.tags_path = self.root / "tags.json"
        self.lock_path = self.root / "lock"
        self.pins_dir = self.root / "pins"
        self.leases = Leases(self.root)
        self.journal_dir = self.root / "journal"

    @property
    def driver(self):
        return self.engine.storage

    # --- locking and transactions -------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Exclusive store lock; re-entrant within a thread (whichever ImageStore object of the root takes it)."""
        depths = _held.__dict__.setdefault("depths", {})
        key = str(self.lock_path)
        if depths.get(key):
            depths[key] += 1
            try:
                yield
            finally:
                depths[key] -= 1
            return
        with locked(self.lock_path):
            depths[key] = 1
            try:
                self.recover()
                yield
            finally:
                depths[key] = 0

    @contextlib.contextmanager
    def transaction(self):
        with self.locked():
            txn = Transaction(self)
            try:
                yield txn
            except BaseException:
                txn.rollback()
                txn.close()
                raise
            txn.close()

    def recover(self) -> None:
        """Undo what killed processes left half-done (called on taking the lock; cheap when nothing was).

        By name and pid: blob temp files ``blob-<pid>-…`` and journals ``journal/<pid>-…`` of dead
        processes. A journal lists the blobs and layers its transaction added: those that no image
        (or lease, or another layer) references now are removed.
        """
        from pallet.kernel.debris import alive, owner_pid

        def dead(name: str) -> bool:
            pid = owner_pid(name)
            return pid is not None and not alive(pid)

        journals = [p for p in self.journal_dir.iterdir() if dead(p.name)] if self.journal_dir.is_dir() else []
        for cid in self.leases.stale():
            # A create killed while leasing: a read-write layer may exist that no record names.
            if not (Path(self.engine.root) / "containers" / cid).exists():
                with contextlib.suppress(Exception):
                    if self.driver.exists(cid):
                        self.driver.remove(cid)
        self.sweep_temp()
        if not journals:
            return
        layers, blobs = [], []
        for journal in journals:
            with contextlib.suppress(OSError):
                for line in journal.read_text().splitlines():
                    kind, _, name = line.partition(" ")
                    (layers if kind == "layer" else blobs).append(name)
        live_layers = {c for record in self.all() for c in record.layers} | self.leases.layers()
        for chain_id in reversed(layers):
            if chain_id not in live_layers:
                with contextlib.suppress(Exception):
                    self.driver.remove(layerlib.layer_id(chain_id))
                with contextlib.suppress(FileNotFoundError):
                    self.layer_path(chain_id).unlink()
        if blobs:
            live = self.live_blobs()
            for path in self.layers_dir.iterdir() if self.layers_dir.is_dir() else ():
                with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                    live.add(read_layer(path).blob)
            for digest in blobs:
                if digest not in live:
                    self.blobs.remove(digest)
        for journal in journals:
            with contextlib.suppress(FileNotFoundError):
                journal.unlink()

    # --- paths and reading --------------------------------------------------------------
    def image_path(self, image_id: str) -> Path:
        return self.images_dir / image_id.split(":", 1)[1]

    def layer_path(self, chain_id: str) -> Path:
        return self.layers_dir / chain_id.split(":", 1)[1]

    def tags(self) -> dict[str, str]:
        try:
            return json.loads(self.tags_path.read_text())
        except FileNotFoundError:
            return {}

    def _write_tags(self, tags: dict[str, str]) -> None:
        atomic_write_json(self.tags_path, dict(sorted(tags.items())))

    def load(self, image_id: str, tags: dict[str, str] | None = None) -> ImageRecord:
        try:
            record = read_image(self.image_path(image_id))
        except FileNotFoundError:
            raise NotFound(f"No such image: {image_id}") from None
        tags = self.tags() if tags is None else tags
        record.repo_tags = sorted(refs.parse(name).familiar() for name, iid in tags.items() if iid == record.id)
        record.config = json.loads(self.blobs.read(record.id))
        return record

    def all(self) -> list[ImageRecord]:
        if not self.images_dir.is_dir():
            return []
        tags = self.tags()
        result = []
        for path in self.images_dir.iterdir():
            if len(path.name) == 64:
                with contextlib.suppress(FileNotFoundError):
                    result.append(self.load("sha256:" + path.name, tags))
        return sorted(result, key=lambda r: r.added, reverse=True)

    def layer(self, chain_id: str) -> LayerRecord:
        try:
            return read_layer(self.layer_path(chain_id))
        except FileNotFoundError:
            raise PalletError(f"layer {chain_id} is not in the image store") from None

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """The image a user names by reference (``busybox``, ``x@sha256:…``) or id / unique id prefix."""
        tags = self.tags()
        try:
            ref = refs.parse(ref_or_id)
        except PalletError:
            ref = None
        if ref is not None and ref.digest is None and str(ref) in tags:
            return self.load(tags[str(ref)], tags)
        if ref is not None and ref.digest:
            for record in self.all():
                if f"{ref.name}@{ref.digest}" in record.repo_digests:
                    return record
        if refs.looks_like_id(ref_or_id):
            hex_part = ref_or_id.removeprefix("sha256:")
            matches = [p.name for p in self.images_dir.glob(hex_part + "*")] if self.images_dir.is_dir() else []
            if len(matches) == 1:
                return self.load("sha256:" + matches[0], tags)
            if len(matches) > 1:
                raise Conflict(f"image id prefix {ref_or_id} is ambiguous ({len(matches)} images)")
        raise NotFound(f"No such image: {ref_or_id}")

    # --- pins: blobs kept alive by something that is not an image (the build cache) -------
    def pin(self, name: str, digests: list[str]) -> None:
        """Keep ``digests`` from being collected while the pin ``name`` exists (call under the lock)."""
        atomic_write_json(self.pins_dir / name, sorted(digests), durable=False)

    def unpin(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.pins_dir / name).unlink()

    def pinned(self) -> set[str]:
        result: set[str] = set()
        for path in self.pins_dir.iterdir() if self.pins_dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError, ValueError):
                result.update(json.loads(path.read_text()))
        return result

    def layer_records(self) -> dict[str, LayerRecord]:
        """Every layer record of the store, by chain id."""
        records = {}
        for path in self.layers_dir.iterdir() if self.layers_dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                records["sha256:" + path.name] = read_layer(path)
        return records

    def pinned_layers(self, records: dict[str, LayerRecord] | None = None) -> set[str]:
        """The layers a pin holds, with their parents: the build cache's unpacked layers (a RUN over a
        cached step's layer unpacks it; it stays for the next build until ``builder prune`` unpins it).
        They are neither debris nor removed with an image that shares their parents."""
        records = self.layer_records() if records is None else records
        pinned = self.pinned()
        held: set[str] = set()
        for chain_id, record in records.items():
            if record.blob not in pinned:
                continue
            while chain_id and chain_id not in held:
                held.add(chain_id)
                chain_id = records[chain_id].parent if chain_id in records else None
        return held

    def remove_layers(self, chain_ids: set[str]) -> int:
        """Remove these layers (children first) and the blobs nothing needs then; return their unpacked
        bytes. The caller holds the lock and knows that no image, lease or pin needs them."""
        records = self.layer_records()
        freed = 0
        for chain_id in sorted(chain_ids & set(records), key=lambda c: -_depth(records, c)):
            with contextlib.suppress(PalletError):
                self.driver.remove(layerlib.layer_id(chain_id))
            with contextlib.suppress(FileNotFoundError):
                self.layer_path(chain_id).unlink()
            freed += records[chain_id].size
        self.collect_blobs()
        return freed

    def ensure_chain(self, layers: list[tuple[mf.Descriptor, str]]) -> str | None:
        """Unpack the layer chain ``[(blob descriptor, diff id)]`` (stored blobs, no image needed) through the
        storage driver; return the driver id of its top layer."""
        if not layers:
            return None
        chains = layerlib.chain_ids([diff_id for _desc, diff_id in layers])
        if self.driver.exists(layerlib.layer_id(chains[-1])) and self.layer_path(chains[-1]).exists():
            return layerlib.layer_id(chains[-1])
        with self.transaction() as txn:
            self._register_layers(txn, [d for d, _ in layers], [i for _, i in layers], chains)
        return layerlib.layer_id(chains[-1])

    def live_blobs(self) -> set[str]:
        """Every blob a stored image needs: manifests, indexes, configs and layer blobs; and pinned blobs."""
        live: set[str] = self.pinned()
        for path in (self.images_dir.iterdir() if self.images_dir.is_dir() else ()):
            with contextlib.suppress(FileNotFoundError, PalletError):
                record = read_image(path)
                live.update({record.id, record.manifest_digest})
                if record.index_digest:
                    live.add(record.index_digest)
                for layer in mf.parse_manifest(self.blobs.read(record.manifest_digest)).layers:
                    live.add(layer.digest)
        return live

    # --- adding images ------------------------------------------------------------------
    def add_image(self, txn: Transaction, manifest_digest: str, names: list[refs.Reference] = (),
                  index_digest: str | None = None, repo_digest_names: list[str] = (), ready=None,
                  progress=None) -> ImageRecord:
        """Register the image whose manifest blob (and config and layer blobs) ``txn`` stored; unpack it; tag it.

        ``ready(index)``, when given, is called before layer ``index`` is used. It returns
        None once the layer's blob is stored, or a stream of the blob still being downloaded
        (read to its end only after the download verified it), so unpacking overlaps downloads.
        """
        manifest = mf.parse_manifest(self.blobs.read(manifest_digest))
        if not self.blobs.has(manifest.config.digest):
            raise PalletError(f"manifest {manifest_digest} references missing config blob {manifest.config.digest}")
        config = mf.load_json(self.blobs.read(manifest.config.digest), "image config")
        diff_ids = mf.config_diff_ids(config)
        if len(diff_ids) != len(manifest.layers):
            raise PalletError(f"image config lists {len(diff_ids)} layers but the manifest has {len(manifest.layers)}")
        chains = layerlib.chain_ids(diff_ids)
        records = self._register_layers(txn, manifest.layers, diff_ids, chains, ready, progress,
                                        f"manifest {manifest_digest}")
        total = sum(record.size for record in records)
        image_id = manifest.config.digest
        previous = self.image_path(image_id).exists()
        record = read_image(self.image_path(image_id)) if previous else ImageRecord(
            id=image_id, manifest_digest=manifest_digest, manifest_media_type=manifest.media_type,
            layers=chains, created=str(config.get("created") or ""), size=total, added=now_rfc3339())
        replaced = previous and record.manifest_digest != manifest_digest
        record.manifest_digest, record.manifest_media_type = manifest_digest, manifest.media_type
        faults.point("image.before-record")
        record.index_digest = index_digest or record.index_digest
        for name in repo_digest_names:
            entry = f"{name}@{index_digest or manifest_digest}"
            if entry not in record.repo_digests:
                record.repo_digests.append(entry)
        write_image(self.image_path(image_id), record)
        if replaced:  # the same image, now under this manifest: the old manifest's blobs may be orphans
            self.collect_blobs()
        if names:
            tags = self.tags()
            tags.update({str(name): image_id for name in names if name.tag})
            self._write_tags(tags)
        return self.load(image_id)

    def _register_layers(self, txn: Transaction, descriptors: list[mf.Descriptor], diff_ids: list[str],
                         chains: list[str], ready=None, progress=None, what: str = "image") -> list[LayerRecord]:
        """Unpack and record every layer of a chain that is not already there; return the records in order.

        A driver whose layers fill independently (``parallel_apply``: overlay2 writes each
        layer's own diff directory) gets the layers unpacked by a bounded pool of threads, each
        a streaming download -> verify -> inflate -> extract pipeline; the others get them in
        order. Either way a layer's record, which is what makes it visible, is written only
        after the layer was verified and synced to disk, and after its parent's record.
        """
        plans = []   # (record, index), index None for a layer already unpacked and recorded
        for index, (descriptor, diff_id, chain_id) in enumerate(zip(descriptors, diff_ids, chains)):
            existing = self._present_layer(chain_id)
            if existing is not None:
                plans.append((existing, None))
                continue
            plans.append((self._layer_to_unpack(descriptor, diff_id, chain_id, chains[index - 1] if index else None),
                          index))

        def source_of(index: int, record: LayerRecord):
            source = ready(index) if ready else None
            if source is None and not self.blobs.has(record.blob) and not self.layer_path(record.chain_id).exists():
                raise PalletError(f"{what} references missing blob {record.blob}")
            return source

        todo = [(record, index) for record, index in plans if index is not None]
        if len(todo) > 1 and self.driver.parallel_apply:
            self._unpack_parallel(txn, todo, source_of, progress)
        else:
            for record, index in todo:
                source = source_of(index, record)
                self._report(progress, record, "Extracting")
                record.size = self._unpack(txn, record, source)
                faults.point("layer.before-record")
                write_layer(self.layer_path(record.chain_id), record)
                self._report(progress, record, "Pull complete")
        return [record for record, _index in plans]

    def _present_layer(self, chain_id: str) -> LayerRecord | None:
        """The layer's record when it is recorded and its driver layer exists: nothing to do for it."""
        path = self.layer_path(chain_id)
        if path.exists() and self.driver.exists(layerlib.layer_id(chain_id)):
            return read_layer(path)
        return None

    def _layer_to_unpack(self, descriptor, diff_id, chain_id, parent) -> LayerRecord:
        path = self.layer_path(chain_id)
        if path.exists() and not self.blobs.has(descriptor.digest):
            return read_layer(path)   # recorded for another driver: unpack it from the blob it names
        return LayerRecord(chain_id, diff_id, parent, descriptor.digest, descriptor.media_type, descriptor.size, 0)

    @staticmethod
    def _report(progress, record: LayerRecord, status: str) -> None:
        if progress:
            progress.finish(record.blob.split(":", 1)[1][:12], status)

    def _unpack_parallel(self, txn: Transaction, todo: list, source_of, progress) -> None:
        """Create the layers in chain order (cheap; the driver needs each parent to exist), fill them in
        parallel, then record them in chain order as they complete."""
        import threading
        from concurrent.futures import ThreadPoolExecutor

        driver = self.driver
        for record, _index in todo:
            lid = layerlib.layer_id(record.chain_id)
            if driver.exists(lid):
                driver.remove(lid)   # left over by an interrupted unpack: nothing records it
            txn.new_layers.append(record.chain_id)
            txn.note("layer", record.chain_id)
            driver.create(lid, layerlib.layer_id(record.parent) if record.parent else None)
        stop = threading.Event()

        def fill(record, index):
            if stop.is_set():
                raise PalletError("pull cancelled")
            source = source_of(index, record)
            self._report(progress, record, "Extracting")
            record.size = self._unpack(txn, record, source, stop=stop, created=True)

        pool = ThreadPoolExecutor(max_workers=min(unpack_jobs(), len(todo)), thread_name_prefix="unpack")
        futures = [pool.submit(fill, record, index) for record, index in todo]
        try:
            for (record, _index), future in zip(todo, futures):
                future.result()
                faults.point("layer.before-record")
                write_layer(self.layer_path(record.chain_id), record)
                self._report(progress, record, "Pull complete")
        except BaseException:
            stop.set()     # the other pipelines stop at their next read
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _unpack(self, txn: Transaction, record: LayerRecord, source=None, stop=None, created: bool = False) -> int:
        """Apply the layer's blob (or ``source``, its bytes still arriving) through the storage driver.

        The diff id is checked and the layer synced to disk (one ``syncfs``, not an fsync per
        file) before this returns; returns the layer's uncompressed size. ``created``: the
        caller already created the empty driver layer and noted it in ``txn``.
        """
        driver = self.driver
        lid = layerlib.layer_id(record.chain_id)
        if not created and driver.exists(lid):
            driver.remove(lid)   # left over by an interrupted unpack: nothing records it
        parent = layerlib.layer_id(record.parent) if record.parent else None
        compression = mf.LAYER_COMPRESSION.get(record.media_type)
        blob_path = self.blobs.path(record.blob)
        if source is None and not blob_path.exists():
            raise PalletError(f"blob {record.blob} of layer {record.chain_id} is missing from the image store")
        if not created:
            txn.new_layers.append(record.chain_id)
            txn.note("layer", record.chain_id)
        with layerlib.uncompressed(source or blob_path, compression) as stream:
            reader = layerlib.HashingReader(stream, stop)
            driver.apply_diff(lid, parent, reader)
            reader.drain()
        if reader.digest != record.diff_id:
            raise DigestMismatch(f"layer {record.blob} does not match its diff id: expected {record.diff_id}, "
                                 f"got {reader.digest}")
        fsutil.syncfs(driver.home)
        return reader.count

    def ensure_layers(self, record: ImageRecord) -> str | None:
        """Unpack every layer of ``record`` missing from the current storage driver; return the top layer id."""
        if not record.layers:
            return None
        driver = self.driver
        if all(driver.exists(layerlib.layer_id(c)) for c in record.layers):
            return record.top_layer
        with self.transaction() as txn:
            for chain_id in record.layers:
                if not driver.exists(layerlib.layer_id(chain_id)):
                    self._unpack(txn, self.layer(chain_id))
        return record.top_layer

    def commit(self, container_layer_tar_stream, parent: ImageRecord | None, config: dict | None,
               history_comment: str = "", tags=(), created_by: str = "", author: str = "",
               platform: str = "") -> str:
        """A new image from ``parent`` plus a layer tar stream (uncompressed; None for none); returns its id.

        ``config`` is the runtime config (``Env``, ``Cmd`` …, the inner ``config`` of the
        image config document); None keeps the parent's. ``platform`` (``os[/arch[/variant]]``)
        names a parentless image's platform instead of the host's.
        """
        from pallet.kernel.images.build import commit
        return commit(self, container_layer_tar_stream, parent, config, history_comment, list(tags),
                      created_by, author, platform)


    def inspect(self, record: ImageRecord) -> dict:
        """The ``docker image inspect`` document for ``record``."""
        config = record.config
        driver = self.engine.storage
        top = record.top_layer
        return {
            "Id": record.id, "RepoTags": record.repo_tags, "RepoDigests": record.repo_digests, "Parent": "",
            "Comment": (config.get("history") or [{}])[-1].get("comment", ""), "Created": record.created,
            "Author": config.get("author", ""), "Config": record.runtime_config,
            "Architecture": config.get("architecture", ""), "Variant": config.get("variant", ""),
            "Os": config.get("os", ""), "Size": record.size,
            "GraphDriver": {"Name": self.engine.storage_driver_name,
                            "Data": driver.metadata(top) if top and driver.exists(top) else {}},
            "RootFS": {"Type": "layers", "Layers": config.get("rootfs", {}).get("diff_ids", [])},
            "Metadata": {"LastTagTime": record.added},
            "Descriptor": {"mediaType": record.manifest_media_type, "digest": record.manifest_digest},
        }

    # --- tags and removal ---------------------------------------------------------------
    def add_repo_digest(self, image_id: str, entry: str) -> None:
        """Remember that ``entry`` (``NAME@DIGEST``) names this image, as ``docker push`` does."""
        with self.locked():
            record = read_image(self.image_path(image_id))
            if entry not in record.repo_digests:
                record.repo_digests.append(entry)
                write_image(self.image_path(image_id), record)

    def tag(self, source: str, target: str) -> ImageRecord:
        record = self.resolve(source)
        ref = refs.parse(target)
        if ref.digest:
            raise PalletError(f'refusing to create a tag with a digest reference: "{target}"')
        with self.locked():
            tags = self.tags()
            tags[str(ref)] = record.id
            self._write_tags(tags)
        return record

    def untag(self, name: str) -> str | None:
        """Remove the tag ``name``; return the image id it pointed at, or None."""
        with self.locked():
            tags = self.tags()
            image_id = tags.pop(str(refs.parse(name)), None)
            if image_id:
                self._write_tags(tags)
            return image_id

    def remove(self, image_id: str) -> list[str]:
        """Delete an image record, its tags, and the layers and blobs no other image needs; return deleted ids."""
        with self.locked():
            record = self.load(image_id)
            leased = self.leases.images().get(record.id)
            if leased:
                raise Conflict(f"conflict: unable to delete {record.short_id} - image is being used by container "
                               f"{leased[0][:12]} being created")
            tags = {k: v for k, v in self.tags().items() if v != record.id}
            self._write_tags(tags)
            self.image_path(record.id).unlink()
            live_layers = {c for other in self.all() for c in other.layers} | self.leases.layers() | \
                self.pinned_layers()
            deleted = [record.id]
            for chain_id in reversed(record.layers):
                if chain_id in live_layers:
                    continue
                with contextlib.suppress(PalletError):
                    self.driver.remove(layerlib.layer_id(chain_id))
                with contextlib.suppress(FileNotFoundError):
                    self.layer_path(chain_id).unlink()
                deleted.append(chain_id)
            self.collect_blobs()
            return deleted

    def collect_blobs(self) -> None:
        live = self.live_blobs()
        for path in self.layers_dir.iterdir() if self.layers_dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                live.add(read_layer(path).blob)
        for digest in self.blobs.digests() - live:
            self.blobs.remove(digest)
        self.sweep_temp()

    def sweep_temp(self) -> None:
        """Remove the temp files (and load directories) of dead processes; a live one's may be staging a
        blob outside the lock (commit), or spooling a load: those stay."""
        from pallet.kernel.debris import is_dead

        for leftover in self.blobs.tmp.iterdir() if self.blobs.tmp.is_dir() else ():
            if is_dead(leftover.name):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()

    def sweep(self, container_ids: set[str]) -> list[str]:
        """Remove what interrupted operations (``kill -9``) left: layers no image uses, their blobs, temp files.

        Driver layers named like image layers (64 hex) that are neither an image's chain id
        nor a container's read-write layer are removed too: ``container_ids``, every container record
        on disk (read under the lock: one created since the caller listed them) and every live lease
        (a create between its read-write layer and its record). Returns the removed layer ids.
        """
        removed = []
        with self.locked():
            live = {c for record in self.all() for c in record.layers} | self.leases.layers() | self.pinned_layers()
            containers = Path(self.engine.root) / "containers"
            container_ids = set(container_ids) | set(self.leases.entries())
            container_ids |= set(os.listdir(containers)) if containers.is_dir() else set()
            for path in list(self.layers_dir.iterdir()) if self.layers_dir.is_dir() else []:
                chain_id = "sha256:" + path.name
                if chain_id not in live:
                    self.driver.remove(path.name)
                    path.unlink()
                    removed.append(chain_id)
            for lid in self.driver.layers():
                if len(lid) == 64 and "sha256:" + lid not in live and lid not in container_ids \
                        and all(c in "0123456789abcdef" for c in lid):
                    self.driver.remove(lid)
                    removed.append("sha256:" + lid)
            self.collect_blobs()
        return removed


def _depth(records: dict[str, LayerRecord], chain_id: str) -> int:
    """How many layers lie below ``chain_id`` (children are removed before their parents)."""
    depth = 0
    while chain_id in records and records[chain_id].parent:
        chain_id = records[chain_id].parent
        depth += 1
    return depth
