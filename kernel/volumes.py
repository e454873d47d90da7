"""Named volumes: records under ``<root>/volumes/<name>/``, their drivers, and which containers use them.

The store owns what Docker's volume service owns: names, labels, the driver chosen at create
time, and the list of containers that have the volume mounted (reference counting). The
driver (``local`` or a plugin's) owns the data: it is asked to mount when the first container
mounts the volume and to unmount when the last one leaves.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel import events
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json, locked

RECORD_FILE = "volume.json"
DEFAULT_DRIVER = "local"
# Docker's rule for volume names.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass
class VolumeRecord:
    """One volume as ``volume inspect`` shows it, plus who has it mounted."""

    name: str
    driver: str = DEFAULT_DRIVER
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    created: float = 0.0
    anonymous: bool = False
    mounted_by: list = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> VolumeRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class VolumeStore:
    """Create, find, mount and remove volumes of one pallet root."""

    def __init__(self, engine):
        self.engine = engine
        self.dir = Path(engine.root) / "volumes"

    # --- records --------------------------------------------------------------------------
    def _lock(self):
        return locked(self.dir / ".lock")

    def _record_path(self, name: str) -> Path:
        return self.dir / name / RECORD_FILE

    def _load(self, name: str) -> VolumeRecord:
        if not NAME_RE.match(name or ""):
            raise NotFound(f"No such volume: {name}")
        try:
            return VolumeRecord.from_json(json.loads(self._record_path(name).read_text()))
        except FileNotFoundError:
            raise NotFound(f"No such volume: {name}") from None

    def _save(self, record: VolumeRecord) -> None:
        atomic_write_json(self._record_path(record.name), record.to_json())

    def driver(self, name: str):
        """An instance of volume driver ``name``; its home is the volumes directory (Docker's layout)."""
        return self.engine.open_driver("volume", name)

    def get(self, name: str) -> VolumeRecord:
        return self._load(name)

    def all(self) -> list[VolumeRecord]:
        if not self.dir.exists():
            return []
        records = []
        for entry in sorted(os.listdir(self.dir)):
            if (self.dir / entry / RECORD_FILE).exists():
                records.append(self._load(entry))
        return records

    # --- lifecycle ------------------------------------------------------------------------
    def create(self, name: str | None = None, driver: str = DEFAULT_DRIVER, options: dict | None = None,
               labels: dict | None = None) -> VolumeRecord:
        """Create a volume; without a name it is anonymous (64 hex chars). An existing name is returned as is,
        as Docker does, unless the driver or options differ."""
        anonymous = not name
        name = name or os.urandom(32).hex()
        if not NAME_RE.match(name):
            raise UsageError(f'invalid volume name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, '
                             "at least two characters")
        options, labels = dict(options or {}), dict(labels or {})
        with self._lock():
            try:
                existing = self._load(name)
            except NotFound:
                existing = None
            if existing is not None:
                if existing.driver != driver or (options and existing.options != options):
                    raise Conflict(f'volume "{name}" already exists with driver "{existing.driver}" '
                                   f"and options {existing.options}")
                return existing
            volume_driver = self.driver(driver)
            record = VolumeRecord(name, driver, options, labels, time.time(), anonymous)
            (self.dir / name).mkdir(parents=True)
            try:
                volume_driver.create(name, options)
                self._save(record)
            except BaseException:
                shutil.rmtree(self.dir / name, ignore_errors=True)
                raise
        events.emit(self.engine, "volume", "create", name, {"driver": driver})
        return record

    def mountpoint(self, record: VolumeRecord) -> Path:
        return Path(self.driver(record.driver).path(record.name))

    def in_use_by(self, name: str, ignore_container: str | None = None) -> list[str]:
        """Ids of containers that mount the volume now or reference it in their configuration."""
        from pallet.kernel.containers import ContainerStore

        users = set(self._load(name).mounted_by)
        for container in ContainerStore(self.engine).all():
            for mount in (container.host_config or {}).get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Source") == name:
                    users.add(container.id)
        users.discard(ignore_container)
        return sorted(users)

    def remove(self, name: str, force: bool = False, ignore_container: str | None = None) -> None:
        """Remove a volume no container uses. ``force`` only makes a missing volume not an error, as Docker's.

        ``ignore_container`` is the container being removed with ``rm -v``: its reference does not count.
        """
        with self._lock():
            try:
                record = self._load(name)
            except NotFound:
                if force:
                    return
                raise
            users = self.in_use_by(name, ignore_container)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self.driver(record.driver).remove(name)
            self._record_path(name).unlink()
            # rmdir, not rmtree: whatever the driver left (a mount it could not release) must stay visible.
            try:
                os.rmdir(self.dir / name)
            except OSError as exc:
                raise PalletError(f"remove {name}: {self.dir / name} is not empty after the driver removed "
                                  f"the volume ({os.strerror(exc.errno)})") from None
        events.emit(self.engine, "volume", "destroy", name, {"driver": record.driver})

    def prune(self, all_volumes: bool = False, labels: dict | None = None) -> tuple[list[str], int]:
        """Remove unused volumes (only anonymous ones unless ``all_volumes``); return names and bytes freed."""
        removed, reclaimed = [], 0
        for record in self.all():
            if not (all_volumes or record.anonymous):
                continue
            if labels and any(record.labels.get(k) != v and not (v == "" and k in record.labels)
                              for k, v in labels.items()):
                continue
            if self.in_use_by(record.name):
                continue
            size = self.size(record)
            try:
                self.remove(record.name)
            except Conflict:
                continue  # someone started using it meanwhile
            removed.append(record.name)
            reclaimed += size
        return removed, reclaimed

    def size(self, record: VolumeRecord) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.mountpoint(record)):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except FileNotFoundError:
                    pass
        return total

    # --- containers -----------------------------------------------------------------------
    def mount(self, name: str, container_id: str) -> tuple[Path, bool]:
        """Mount volume ``name`` for a container, creating it (local driver) if it does not exist.

        Returns ``(host path, created_empty)``: ``created_empty`` (the volume holds nothing)
        tells the caller to copy the image's content at the mount point into the volume, as
        Docker does for an empty volume.
        """
        try:
            self._load(name)
        except NotFound:
            self.create(name)  # returns the existing volume if another container made it meanwhile
        with self._lock():
            record = self._load(name)
            volume_driver = self.driver(record.driver)
            if not record.mounted_by:
                path = Path(volume_driver.mount(name, container_id))
            else:
                path = Path(volume_driver.path(name))
            if container_id not in record.mounted_by:
                record.mounted_by.append(container_id)
            self._save(record)
            created_empty = not any(path.iterdir())
        events.emit(self.engine, "volume", "mount", name, {"container": container_id, "driver": record.driver})
        return path, created_empty

    def unmount(self, name: str, container_id: str) -> None:
        """Release one container's mount; the driver unmounts when the last container leaves. Idempotent."""
        with self._lock():
            try:
                record = self._load(name)
            except NotFound:
                return
            if container_id not in record.mounted_by:
                return
            record.mounted_by.remove(container_id)
            if not record.mounted_by:
                self.driver(record.driver).unmount(name, container_id)
            self._save(record)
        events.emit(self.engine, "volume", "unmount", name, {"container": container_id, "driver": record.driver})
