"""The persistent build cache: step key -> the layer it made, under ``<root>/build/cache``.

A key is the sha256 of the parent step's key, the instruction after expansion, the build args in
scope and, for COPY/ADD, the content of exactly the files used. Each entry pins its layer blob in
the image store (so ``rmi`` and ``image prune`` keep it) until ``pallet builder prune`` drops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pallet.kernel.fsutil import atomic_write_json
from pallet.kernel.images import manifest as mf

PIN_PREFIX = "build-"


def step_key(*parts) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Entry:
    key: str
    media_type: str
    digest: str
    size: int
    diff_id: str
    created: str
    stage: str = ""
    description: str = ""
    last_used: float = 0.0

    @property
    def descriptor(self) -> mf.Descriptor:
        return mf.Descriptor(self.media_type, self.digest, self.size)


class BuildCache:
    def __init__(self, engine, store):
        self.dir = Path(engine.root) / "build" / "cache"
        self.store = store

    def _path(self, key: str) -> Path:
        return self.dir / key.split(":", 1)[1]

    def get(self, key: str) -> Entry | None:
        try:
            entry = Entry(**json.loads(self._path(key).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if not self.store.blobs.has(entry.digest):
            return None
        with contextlib.suppress(OSError):
            self._path(key).touch()
        return entry

    def put(self, txn, entry: Entry) -> None:
        """Record ``entry`` and pin its blob, inside the store transaction that ingested the blob."""
        entry.last_used = time.time()
        self.store.pin(PIN_PREFIX + entry.key.split(":", 1)[1], [entry.digest])
        atomic_write_json(self._path(entry.key), asdict(entry))

    def entries(self) -> list[Entry]:
        result = []
        for path in self.dir.iterdir() if self.dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                entry = Entry(**json.loads(path.read_text()))
                entry.last_used = path.stat().st_mtime
                result.append(entry)
        return result

    def size(self) -> int:
        total = 0
        for entry in self.entries():
            total += entry.size
        return total

    def prune(self, keep_used_by_images: bool = True, older_than: float | None = None) -> tuple[list[str], int]:
        """Drop entries (all, or those unused since ``older_than``); return (keys removed, bytes freed).

        With ``keep_used_by_images`` the entries whose layer a stored image still holds stay, as
        ``docker builder prune`` without ``--all`` keeps the cache of tagged images.
        """
        removed, freed = [], 0
        with self.store.locked():
            held_before = self.store.pinned_layers()
            in_images: set[str] = set()
            if keep_used_by_images:
                for record in self.store.all():
                    with contextlib.suppress(Exception):
                        in_images.update(d.digest for d in
                                         mf.parse_manifest(self.store.blobs.read(record.manifest_digest)).layers)
            for entry in self.entries():
                if entry.digest in in_images:
                    continue
                if older_than is not None and entry.last_used >= older_than:
                    continue
                self.store.unpin(PIN_PREFIX + entry.key.split(":", 1)[1])
                with contextlib.suppress(FileNotFoundError):
                    self._path(entry.key).unlink()
                removed.append(entry.key)
                freed += entry.size
            # the layers unpacked for the dropped entries go too, unless an image or a container needs them
            needed = {c for record in self.store.all() for c in record.layers} | self.store.leases.layers()
            freed += self.store.remove_layers(held_before - self.store.pinned_layers() - needed)
            # the remembered COPY --from content hashes (kernel/build/copying.py) are recomputed on demand
            digests = self.dir.parent / "digests"
            for path in digests.iterdir() if digests.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    if older_than is None or path.stat().st_mtime < older_than:
                        path.unlink()
            self.store.collect_blobs()
        return removed, freed
