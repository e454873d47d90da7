"""Secrets without swarm: values encrypted at rest under ``<root>/secrets/``, shown to containers on a tmpfs.

A secret is a record (``meta.json``: id, name, labels, created) and its value sealed with
AES-256-GCM (``data``: nonce + ciphertext, the id and name bound in as associated data, so a
sealed value cannot be moved to another record). The key is one file kept *apart* from the
root: ``[secrets] key_file`` in the config, by default ``secrets.key`` next to the config file
(``/etc/pallet/secrets.key``), so a copy or backup of the root alone reveals no value.

At start the values are decrypted onto a fresh tmpfs in the container's run directory, which
is bound read-only at ``/run/secrets`` in the container; once the runtime has built the
container's mounts the host's view of that tmpfs is detached, so the plaintext lives only in
the container's mount namespace (memory), never on a disk, in a layer or under the run root.

A root that joined a cluster keeps its secrets in the cluster store instead (``open_store``,
:mod:`pallet.kernel.cluster.secrets`), sealed with the same key, so a task's container on any
node gets them the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write, atomic_write_json, locked, write_owned
from pallet.kernel.secretbox import MAX_SIZE, NAME_RE, SecretRecord, cipher, key_path

MOUNT_DIR = "secrets"          # in the container's run directory
TARGET_DIR = "/run/secrets"


def open_store(engine):
    """The secrets of this root: its own store, or its cluster's once it joined one (as Docker in swarm mode)."""
    from pallet.kernel.cluster import store

    if store.membership(engine) is not None:
        from pallet.kernel.cluster.secrets import ClusterSecrets

        return ClusterSecrets(engine)
    return SecretStore(engine)


class SecretStore:
    """Create, list, find, open and remove the secrets of one pallet root."""

    def __init__(self, engine):
        self.engine = engine
        self.dir = Path(engine.root) / "secrets"

    def _lock(self):
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return locked(self.dir / ".lock")

    def _cipher(self, create: bool = False):
        return cipher(self.engine, create)

    def _find_id(self, name_or_id: str) -> str:
        if not self.dir.exists():
            raise NotFound(f"secret not found: {name_or_id}")
        matches = []
        for entry in os.listdir(self.dir):
            meta = self.dir / entry / "meta.json"
            if not meta.exists():
                continue
            record = SecretRecord.from_json(json.loads(meta.read_text()))
            if record.name == name_or_id or record.id == name_or_id:
                return record.id
            if len(name_or_id) >= 4 and record.id.startswith(name_or_id):
                matches.append(record.id)
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"secret not found: {name_or_id}")

    def get(self, name_or_id: str) -> SecretRecord:
        return SecretRecord.from_json(json.loads((self.dir / self._find_id(name_or_id) / "meta.json").read_text()))

    def all(self) -> list[SecretRecord]:
        if not self.dir.exists():
            return []
        records = []
        for entry in sorted(os.listdir(self.dir)):
            meta = self.dir / entry / "meta.json"
            if meta.exists():
                records.append(SecretRecord.from_json(json.loads(meta.read_text())))
        return sorted(records, key=lambda r: r.name)

    def create(self, name: str, value: bytes, labels: dict | None = None) -> SecretRecord:
        if not NAME_RE.match(name or ""):
            raise UsageError(f'invalid secret name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, '
                             "at most 64 characters")
        if len(value) > MAX_SIZE:
            raise UsageError(f"secret {name} is {len(value)} bytes: a secret holds at most {MAX_SIZE} bytes")
        if not value:
            raise UsageError(f"secret {name} is empty: a secret needs a value")
        with self._lock():
            with contextlib.suppress(NotFound):
                self._find_id(name)
                raise Conflict(f'secret "{name}" already exists')
            now = time.time()
            record = SecretRecord(os.urandom(13).hex()[:25], name, dict(labels or {}), now, now)
            home = self.dir / record.id
            home.mkdir(mode=0o700)
            try:
                atomic_write(home / "data", self._seal(record, value), mode=0o600)
                atomic_write_json(home / "meta.json", record.to_json(), mode=0o600)
            except BaseException:
                shutil.rmtree(home, ignore_errors=True)
                raise
        return record

    def set_labels(self, name_or_id: str, labels: dict) -> SecretRecord:
        """Replace a secret's labels, the one part of it that may change (its value and name are sealed together)."""
        with self._lock():
            record = self.get(name_or_id)
            record.labels, record.updated = dict(labels), time.time()
            atomic_write_json(self.dir / record.id / "meta.json", record.to_json(), mode=0o600)
        return record

    def _aad(self, record: SecretRecord) -> bytes:
        return f"pallet-secret:{record.id}:{record.name}".encode()

    def _seal(self, record: SecretRecord, value: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._cipher(create=True).encrypt(nonce, value, self._aad(record))

    def value(self, name_or_id: str) -> bytes:
        """The plaintext, for a container's tmpfs only."""
        from cryptography.exceptions import InvalidTag

        record = self.get(name_or_id)
        sealed = (self.dir / record.id / "data").read_bytes()
        try:
            return self._cipher().decrypt(sealed[:12], sealed[12:], self._aad(record))
        except InvalidTag:
            raise PalletError(f"secret {record.name} cannot be decrypted with the key {key_path(self.engine)} "
                              "(another key, or the data was altered)") from None

    def users(self, secret_id: str) -> list[str]:
        from pallet.kernel.containers import ContainerStore

        return sorted(c.name or c.id for c in ContainerStore(self.engine).all()
                      if any(ref.get("SecretID") == secret_id for ref in (c.host_config or {}).get("Secrets") or []))

    def remove(self, name_or_id: str) -> str:
        """Remove a secret no container references (a container would not start without it)."""
        with self._lock():
            record = self.get(name_or_id)
            users = self.users(record.id)
            if users:
                raise Conflict(f"secret {record.name} is in use by the following containers: {', '.join(users)}")
            shutil.rmtree(self.dir / record.id)
        return record.name


# --- containers --------------------------------------------------------------------------------

def parse_secret(engine, spec: str) -> dict:
    """``--secret NAME[,source=NAME][,target=FILE][,uid=][,gid=][,mode=]`` -> Docker's SecretReference."""
    fields, name = {}, ""
    for index, item in enumerate(spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep and index == 0:
            name = key
            continue
        if key not in ("source", "src", "target", "uid", "gid", "mode") or not sep:
            raise UsageError(f'invalid --secret "{spec}": unknown field "{item}" '
                             "(known: source, target, uid, gid, mode)")
        fields["source" if key == "src" else key] = value
    name = fields.get("source", name)
    if not name:
        raise UsageError(f'invalid --secret "{spec}": no secret name')
    target = fields.get("target", name)
    if "/" in target.removeprefix(TARGET_DIR + "/") or target in (".", ".."):
        raise UsageError(f'invalid --secret "{spec}": the target must be a file name in {TARGET_DIR}')
    target = target.removeprefix(TARGET_DIR + "/")
    try:
        uid, gid = int(fields.get("uid", "0")), int(fields.get("gid", "0"))
        mode = int(fields.get("mode", "0444"), 8)
    except ValueError:
        raise UsageError(f'invalid --secret "{spec}": uid and gid are numbers, mode an octal number') from None
    if uid < 0 or gid < 0 or not 0 <= mode <= 0o777:
        raise UsageError(f'invalid --secret "{spec}": uid/gid out of range or mode not in 0000-0777')
    record = open_store(engine).get(name)
    return {"SecretID": record.id, "SecretName": record.name,
            "File": {"Name": target, "UID": str(uid), "GID": str(gid), "Mode": mode}}


def resolve_references(engine, specs) -> list[dict]:
    """Every ``--secret`` of a create, checked (the secret exists, targets differ) before anything is made."""
    refs = [parse_secret(engine, spec) for spec in specs]
    names = [ref["File"]["Name"] for ref in refs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(f"--secret: two secrets have the target {TARGET_DIR}/{duplicate}")
    return refs


def mount_dir(run_dir: Path) -> Path:
    return Path(run_dir) / MOUNT_DIR


def spec_mounts(run_dir: Path, record) -> list[dict]:
    """The read-only bind of the container's secrets tmpfs at /run/secrets (none without secrets)."""
    if not (record.host_config or {}).get("Secrets"):
        return []
    return [{"destination": TARGET_DIR, "type": "bind", "source": str(mount_dir(run_dir)),
             "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}]


def materialize(engine, record, run_dir: Path) -> bool:
    """Decrypt the container's secrets onto a private tmpfs at ``<run_dir>/secrets``; False without secrets.

    The directory is first bound onto itself and made private, so the tmpfs mounted on it
    propagates to no other mount namespace (a shared /run would copy it into every peer).
    """
    from pallet.kernel import linux

    refs = (record.host_config or {}).get("Secrets") or []
    if not refs:
        return False
    store = open_store(engine)
    values = []
    for ref in refs:
        try:
            values.append((ref, store.value(ref["SecretID"])))
        except NotFound:
            raise NotFound(f"secret not found: {ref['SecretName']} (container {record.name} needs it)") from None
    target = mount_dir(run_dir)
    hide(run_dir)
    target.mkdir(mode=0o700, exist_ok=True)
    size = sum(len(v) for _r, v in values) + 64 * 1024
    linux.mount(str(target), str(target), None, linux.MS_BIND)
    try:
        linux.mount(None, str(target), None, linux.MS_PRIVATE)
        linux.mount("tmpfs", str(target), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    f"mode=0755,size={size}")
        linux.mount(None, str(target), None, linux.MS_PRIVATE)
        remap = engine.storage_remap
        for ref, value in values:
            uid, gid = int(ref["File"]["UID"]), int(ref["File"]["GID"])
            write_owned(target / ref["File"]["Name"], value, remap.shift(uid, gid) if remap is not None else (uid, gid),
                        ref["File"]["Mode"])
    except BaseException:
        hide(run_dir)
        raise
    return True


def hide(run_dir: Path) -> None:
    """Detach the host's view of the secrets tmpfs (the container keeps its bind). Idempotent."""
    from pallet.kernel import linux

    target = mount_dir(run_dir)
    if not target.exists():  # every start calls this: a container without secrets pays one stat
        return
    while _is_mountpoint(target):
        try:
            linux.umount2(str(target), linux.MNT_DETACH)
        except OSError as exc:
            raise PalletError(f"cannot unmount the secrets tmpfs {target}: {exc}") from None
    with contextlib.suppress(FileNotFoundError):
        target.rmdir()


def _is_mountpoint(path: Path) -> bool:
    text = str(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == text for line in handle)
