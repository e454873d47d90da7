"""What the secret stores share: the secrets key (kept apart from the root), sealing, and the record.

``kernel/secrets.py`` (a root's own store) and ``kernel/cluster/secrets.py`` (a cluster's, in etcd)
both seal values with AES-256-GCM under this key; neither imports the other's store.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
MAX_SIZE = 500 * 1024          # Docker's limit for one secret
KEY_SIZE = 32


@dataclass
class SecretRecord:
    """What ``secret inspect`` shows: never the value."""

    id: str
    name: str
    labels: dict = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SecretRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def key_path(engine) -> Path:
    configured = engine.config.section("secrets").get("key_file")
    return Path(configured) if configured else Path(engine.config.config_path).parent / "secrets.key"


def read_key(engine, create: bool = False, missing: str | None = None) -> bytes:
    """This host's secrets key (made on first use when ``create``); ``missing`` is the error without one."""
    path = key_path(engine)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise PalletError(missing or f"the secrets key {path} is missing: the stored secrets cannot be decrypted "
                              "(restore the key file, or remove and re-create the secrets)") from None
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = AESGCM.generate_key(bit_length=KEY_SIZE * 8)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, key, mode=0o600)
    except OSError as exc:
        raise PalletError(f"the secrets key {path} cannot be read: {exc.strerror}") from None
    if len(key) != KEY_SIZE:
        raise PalletError(f"the secrets key {path} is not a {KEY_SIZE}-byte key")
    return key


def cipher(engine, create: bool = False):
    """The AES-GCM of this host's secrets key (made on first use when ``create``)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(read_key(engine, create))


def key_id_of(key: bytes) -> str:
    """A fingerprint of a key that reveals nothing of it (to tell two keys apart)."""
    import hashlib

    return hashlib.sha256(b"pallet-secrets-key-id\0" + key).hexdigest()[:16]


def key_id(engine) -> str:
    """The fingerprint of this host's secrets key (made on first use)."""
    return key_id_of(read_key(engine, create=True))
