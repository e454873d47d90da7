"""Container records on disk (``<root>/containers/<id>/container.json``) and the store that finds them."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import Conflict, NotFound, UsageError
from pallet.kernel.fsutil import atomic_write_json, locked

RECORD_FILE = "container.json"
# Docker's rule for container names.
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass
class ContainerRecord:
    """Everything pallet knows about one container. Serialised only by ``to_json``/``from_json``."""

    id: str
    name: str
    image_id: str = ""
    image_ref: str = ""
    created: float = 0.0
    status: str = "created"             # created | running | paused | exited | dead
    pid: int = 0
    pid_start_time: int = 0             # /proc/<pid>/stat field 22: tells a live pid from a reused one
    monitor_pid: int = 0
    monitor_start_time: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    network_mode: str = "none"
    port_bindings: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)        # Docker's Config: Cmd, Entrypoint, Env, WorkingDir, User, Tty …
    host_config: dict = field(default_factory=dict)   # Docker's HostConfig: Binds, Mounts, resources, AutoRemove …
    runtime: str = "pallet"
    storage_driver: str = ""
    image_top_layer: str | None = None
    network: dict = field(default_factory=dict)       # what the network driver reported on connect
    anonymous_volumes: list = field(default_factory=list)
    restart_count: int = 0
    # kernel/restart.py: a stop/kill by the user (never restarted), the current back-off, a restart
    # asked by --health-on-failure restart whatever the policy.
    stopped_by_user: bool = False
    restart_delay: float = 0.0
    restart_forced: bool = False
    error: str = ""                     # Docker's State.Error: why pallet ended the container itself

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ContainerRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_container_id() -> str:
    return os.urandom(32).hex()


_ADJECTIVES = ("agile", "bold", "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly",
               "keen", "lucid", "merry", "nimble", "proud", "quiet", "sharp", "swift", "tender", "witty")
_NOUNS = ("babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "kepler", "lovelace", "mayer",
          "noether", "pascal", "ritchie", "shannon", "tesla", "turing", "volta", "wozniak", "yalow", "zuse")


# ContainerStore.all(shared=True): {store home: {id: ((inode, mtime ns, size), record)}}.
_SHARED: dict[str, dict[str, tuple[tuple, ContainerRecord]]] = {}


class ContainerStore:
    """Find, save and remove container records. Name uniqueness is checked under one store lock."""

    def __init__(self, engine):
        self.engine = engine
        self.home = Path(engine.root) / "containers"

    @classmethod
    def of_root(cls, root) -> "ContainerStore":
        """A reader of ``root``'s records without an engine (the resident engine keeps them parsed)."""
        store = cls.__new__(cls)
        store.engine, store.home = None, Path(root) / "containers"
        return store

    # --- paths --------------------------------------------------------------------------
    def dir(self, cid: str) -> Path:
        return self.home / cid

    def run_dir(self, cid: str) -> Path:
        """Bundle and runtime files: ``<run_root>/containers/<id>``."""
        return Path(self.engine.run_root) / "containers" / cid

    def log_path(self, cid: str) -> Path:
        return self.dir(cid) / f"{cid}-json.log"

    def lock(self):
        return locked(self.home / ".lock")

    # --- reading ------------------------------------------------------------------------
    def _names(self) -> list[str]:
        """The container directories' names (a record may not be written in one yet)."""
        try:
            with os.scandir(self.home) as entries:
                return [e.name for e in entries if len(e.name) == 64]
        except FileNotFoundError:
            return []

    def ids(self) -> list[str]:
        home = str(self.home)
        return [name for name in self._names() if os.path.exists(f"{home}/{name}/{RECORD_FILE}")]

    def load(self, cid: str) -> ContainerRecord:
        try:
            data = json.loads((self.dir(cid) / RECORD_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"No such container: {cid}") from None
        return ContainerRecord.from_json(data)

    def all(self, shared: bool = False) -> list[ContainerRecord]:
        """Every record. ``shared``: for a reader that only reads them (the Engine API's list, ``ps``):
        records are kept between calls and parsed again only when their file was replaced (every write
        renames a new file in, so inode, mtime and size tell); the caller must not change them. The
        resident engine parses its root's records while idle, so its workers inherit them parsed."""
        if shared:
            return self._all_shared()
        home, records = str(self.home), []
        for cid in self._names():   # plain paths and one open each: `ps -a` reads every record this way
            try:
                with open(f"{home}/{cid}/{RECORD_FILE}", "rb") as handle:
                    data = handle.read()
            except (FileNotFoundError, NotADirectoryError):
                continue  # not written yet, or removed while we listed
            records.append(ContainerRecord.from_json(json.loads(data)))
        return records

    def _all_shared(self) -> list[ContainerRecord]:
        home = str(self.home)
        before = _SHARED.get(home, {})
        now: dict[str, tuple[tuple, ContainerRecord]] = {}
        for cid in self._names():
            try:
                fd = os.open(f"{home}/{cid}/{RECORD_FILE}", os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue  # not written yet, or removed while we listed
            try:
                stat = os.fstat(fd)
                key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                kept = before.get(cid)
                if kept is None or kept[0] != key:
                    with os.fdopen(fd, "rb", closefd=False) as handle:
                        kept = (key, ContainerRecord.from_json(json.loads(handle.read())))
            finally:
                os.close(fd)
            now[cid] = kept
        _SHARED[home] = now
        return [record for _key, record in now.values()]

    def get(self, name_or_id: str) -> ContainerRecord:
        """Full id, a unique id prefix, or a name (with or without Docker's leading ``/``)."""
        key = name_or_id.strip()
        if not key:
            raise NotFound("No such container: ")
        if len(key) == 64 and (self.dir(key) / RECORD_FILE).exists():
            return self.load(key)
        records = self.all()
        bare = key.lstrip("/")
        for record in records:
            if record.name == bare:
                return record
        matches = [r for r in records if r.id.startswith(key.lower())]
        if len(matches) > 1:
            raise Conflict(f"multiple containers found with provided prefix: {key}")
        if not matches:
            raise NotFound(f"No such container: {name_or_id}")
        return matches[0]

    # --- writing ------------------------------------------------------------------------
    def save(self, record: ContainerRecord, durable: bool = True) -> None:
        atomic_write_json(self.dir(record.id) / RECORD_FILE, record.to_json(), durable=durable)

    def update(self, cid: str, durable: bool = True, **changes) -> ContainerRecord:
        """Read-modify-write one record under the store lock (monitor and CLI both write it).

        ``durable=False`` for facts a reboot makes stale anyway (a running pid): atomic, not fsynced.
        """
        with self.lock():
            record = self.load(cid)
            for key, value in changes.items():
                setattr(record, key, value)
            self.save(record, durable)
            return record

    def add(self, record: ContainerRecord) -> ContainerRecord:
        """Save a new record; pick a random name when empty; refuse a name already in use."""
        with self.lock():
            # Shared (only names and ids are read): a file replaced since it was parsed is parsed again.
            taken = {r.name: r.id for r in self.all(shared=True)}
            if record.name:
                validate_name(record.name)
                record.name = record.name.lstrip("/")
                if record.name in taken:
                    raise Conflict(
                        f'Conflict. The container name "/{record.name}" is already in use by container '
                        f'"{taken[record.name]}". You have to remove (or rename) that container to be able to reuse that name.'
                    )
            else:
                record.name = _random_name(set(taken))
            self.save(record)
        return record

    def rename(self, record: ContainerRecord, new_name: str) -> ContainerRecord:
        validate_name(new_name)
        new_name = new_name.lstrip("/")
        with self.lock():
            for other in self.all(shared=True):
                if other.name == new_name and other.id != record.id:
                    raise Conflict(f'Error when allocating new name: Conflict. The container name "/{new_name}" '
                                   f'is already in use by container "{other.id}".')
            fresh = self.load(record.id)
            fresh.name = new_name
            self.save(fresh)
            return fresh

    def remove(self, cid: str) -> None:
        """Delete the record and its directory (logs included). Missing is not an error."""
        with self.lock():
            shutil.rmtree(self.dir(cid), ignore_errors=True)
            shutil.rmtree(self.run_dir(cid), ignore_errors=True)


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')


def _random_name(taken: set[str]) -> str:
    rng = random.Random(time.time_ns() ^ os.getpid())
    while True:
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if name not in taken:
            return name
        name = f"{name}{rng.randint(0, 9)}"
        if name not in taken:
            return name
