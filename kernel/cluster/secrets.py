"""Secrets in the cluster store: Docker ``Secret`` records (``secrets/<id>``, names claimed in ``secret-names/``).

The value is sealed before it leaves the host that creates it: AES-256-GCM under the secrets key
(``[secrets] key_file``, kept apart from the root and from etcd), the id and name bound in as
associated data, so etcd, its data directory and its snapshots hold only ciphertext. Every node
that runs a task using a secret needs the same key file (as every Docker manager needs the
swarm's unlock key); ``KeyID``, a fingerprint of the key, lets a node with another key say so
instead of failing on a bad tag. Only the labels of a secret can change (Docker's rule).
"""

from __future__ import annotations

import base64
import contextlib

from pallet.kernel.cluster import PREFIX, store
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError

SECRETS, SECRET_NAMES = f"{PREFIX}secrets/", f"{PREFIX}secret-names/"


class ClusterSecrets:
    """The ``SecretStore`` interface over the cluster store (what ``secrets.open_store`` gives a joined root)."""

    def __init__(self, engine):
        self.engine = engine
        self.etcd = store.connect(engine)

    # --- records --------------------------------------------------------------------------------
    def _records(self) -> list[dict]:
        return store.records(self.etcd, SECRETS)

    def _find(self, name_or_id: str) -> dict:
        records = self._records()
        for match in ([r for r in records if r["ID"] == name_or_id], [r for r in records if r["Spec"]["Name"] == name_or_id],
                      [r for r in records if len(name_or_id) >= 4 and r["ID"].startswith(name_or_id)]):
            if len(match) == 1:
                return match[0]
        raise NotFound(f"secret not found: {name_or_id}")

    @staticmethod
    def _record(data: dict):
        from pallet.kernel.secretbox import SecretRecord

        return SecretRecord(data["ID"], data["Spec"]["Name"], dict(data["Spec"].get("Labels") or {}),
                            store.parse_time(data.get("CreatedAt", "")), store.parse_time(data.get("UpdatedAt", "")))

    def get(self, name_or_id: str):
        return self._record(self._find(name_or_id))

    def all(self) -> list:
        return sorted((self._record(r) for r in self._records()), key=lambda r: r.name)

    # --- values ---------------------------------------------------------------------------------
    @staticmethod
    def _aad(secret_id: str, name: str) -> bytes:
        return f"pallet-cluster-secret:{secret_id}:{name}".encode()

    def create(self, name: str, value: bytes, labels: dict | None = None):
        import os

        from pallet.kernel.secretbox import MAX_SIZE, NAME_RE, cipher, key_id

        if not NAME_RE.match(name or ""):
            raise UsageError(f'invalid secret name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, '
                             "at most 64 characters")
        if len(value) > MAX_SIZE:
            raise UsageError(f"secret {name} is {len(value)} bytes: a secret holds at most {MAX_SIZE} bytes")
        if not value:
            raise UsageError(f"secret {name} is empty: a secret needs a value")
        secret_id, stamp = store.new_id(), store.now()
        nonce = os.urandom(12)
        sealed = nonce + cipher(self.engine, create=True).encrypt(nonce, value, self._aad(secret_id, name))
        record = {"ID": secret_id, "CreatedAt": stamp, "UpdatedAt": stamp,
                  "Spec": {"Name": name, "Labels": dict(labels or {})},
                  "Sealed": base64.b64encode(sealed).decode(), "KeyID": key_id(self.engine)}
        name_key = f"{SECRET_NAMES}{name}"
        if not self.etcd.txn({name_key: 0}, puts={name_key: secret_id, f"{SECRETS}{secret_id}": record}):
            raise Conflict(f'secret "{name}" already exists')
        return self._record(record)

    def value(self, name_or_id: str) -> bytes:
        """The plaintext, for a container's tmpfs only."""
        from cryptography.exceptions import InvalidTag

        from pallet.kernel.secretbox import cipher, key_id, key_path

        record = self._find(name_or_id)
        name = record["Spec"]["Name"]
        mine = key_id(self.engine)
        if record.get("KeyID") and record["KeyID"] != mine:
            raise PalletError(f"secret {name} is sealed with the secrets key {record['KeyID']}, this node has "
                              f"{mine} ({key_path(self.engine)}): copy the cluster's key file to this node")
        sealed = base64.b64decode(record.get("Sealed") or "")
        try:
            return cipher(self.engine).decrypt(sealed[:12], sealed[12:], self._aad(record["ID"], name))
        except InvalidTag:
            raise PalletError(f"secret {name} cannot be decrypted with the key {key_path(self.engine)} "
                              "(another key, or the data was altered)") from None

    # --- changes --------------------------------------------------------------------------------
    def set_labels(self, name_or_id: str, labels: dict):
        record = self._find(name_or_id)

        def change(data):
            data["Spec"]["Labels"] = dict(labels)

        return self._record(store.update_record(self.etcd, f"{SECRETS}{record['ID']}", change,
                                                f"secret not found: {name_or_id}"))

    def users(self, secret_id: str) -> list[str]:
        """The services whose tasks get this secret, and this root's containers that reference it."""
        from pallet.kernel.containers import ContainerStore

        snap = store.snapshot(self.etcd)
        services = [s["Spec"]["Name"] for s in snap.services.values() if isinstance(s, dict) and any(
            ref.get("SecretID") == secret_id for ref in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or ())]
        containers = [c.name or c.id for c in ContainerStore(self.engine).all()
                      if not (c.labels or {}).get("com.docker.swarm.task.id") and any(
                          ref.get("SecretID") == secret_id for ref in (c.host_config or {}).get("Secrets") or [])]
        return sorted(services) + sorted(containers)

    def remove(self, name_or_id: str) -> str:
        """Remove a secret no service (nor container of this root) uses; its name."""
        record = self._find(name_or_id)
        name = record["Spec"]["Name"]
        users = self.users(record["ID"])
        if users:
            raise Conflict(f"secret '{name}' is in use by the following service: {', '.join(users)}")
        name_key = f"{SECRET_NAMES}{name}"
        deletes = [f"{SECRETS}{record['ID']}"]
        with contextlib.suppress(PalletError):
            if self.etcd.get(name_key) == record["ID"]:
                deletes.append(name_key)
        self.etcd.txn({f"{SECRETS}{record['ID']}": record["Version"]["Index"]}, deletes=deletes)
        return name
