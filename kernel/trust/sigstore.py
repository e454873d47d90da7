"""sigstore/cosign key pairs and signatures: ECDSA P-256 over SHA-256 with ``cryptography``.

Private keys use cosign's encrypted PEM (``ENCRYPTED COSIGN PRIVATE KEY``): a JSON envelope
with scrypt key derivation and a NaCl secretbox around the PKCS#8 key, the format skopeo's
``--sign-by-sigstore-private-key`` reads. Public keys are PEM SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write
from pallet.kernel.trust.payload import InvalidSignature

PEM_TYPES = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
SCRYPT = {"N": 32768, "r": 8, "p": 1}


def _derive(passphrase: bytes, salt: bytes, params: dict) -> bytes:
    n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * r * n + (1 << 20))


def _pem(kind: str, data: bytes) -> bytes:
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]) + "\n").encode()


def _unpem(data: bytes) -> tuple[str, bytes]:
    text = data.decode("ascii", errors="replace").strip().splitlines()
    if len(text) < 2 or not text[0].startswith("-----BEGIN ") or not text[-1].startswith("-----END "):
        raise PalletError("not a PEM file")
    kind = text[0][len("-----BEGIN "):].rstrip("-")
    try:
        return kind, base64.b64decode("".join(text[1:-1]), validate=True)
    except binascii.Error:
        raise PalletError("the PEM body is not base64") from None


def generate(prefix: str, passphrase: bytes) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (encrypted) and ``PREFIX.pub``; refuse to overwrite either."""
    import nacl.secret
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_path, public_path = Path(prefix + ".key"), Path(prefix + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise PalletError(f"{path} exists already; choose another --output-prefix")
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, SCRYPT))
    envelope = {"kdf": {"name": "scrypt", "params": SCRYPT, "salt": base64.b64encode(salt).decode()},
                "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
                "ciphertext": base64.b64encode(box.encrypt(der, nonce).ciphertext).decode()}
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write(private_path, _pem(PEM_TYPES[0], json.dumps(envelope).encode()), mode=0o600)
    atomic_write(public_path, public)
    return private_path, public_path


def load_private(data: bytes, passphrase: bytes, name: str = "the private key"):
    import nacl.exceptions
    import nacl.secret
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        kind, body = _unpem(data)
    except PalletError as exc:
        raise PalletError(f"cannot read {name}: {exc}") from None
    if kind not in PEM_TYPES:
        raise PalletError(f'cannot read {name}: a PEM "{kind}", not an encrypted sigstore private key')
    try:
        envelope = json.loads(body)
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError("unsupported kdf or cipher")
        secret = _derive(passphrase, base64.b64decode(kdf["salt"]), kdf["params"])
        der = nacl.secret.SecretBox(secret).decrypt(base64.b64decode(envelope["ciphertext"]),
                                                    base64.b64decode(cipher["nonce"]))
    except nacl.exceptions.CryptoError:
        raise PalletError(f"cannot decrypt {name}: wrong passphrase") from None
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise PalletError(f"cannot read {name}: malformed encrypted key ({exc})") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PalletError(f"cannot use {name}: only ECDSA keys are supported")
    return key


def load_public(data: bytes, name: str = "the public key"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise PalletError(f"cannot read {name}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PalletError(f"cannot use {name}: only ECDSA public keys are supported")
    return key


def sign(private_key, payload: bytes) -> str:
    """The base64 ASN.1 ECDSA signature cosign stores in the ``dev.cosignproject.cosign/signature`` annotation."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    return base64.b64encode(private_key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def verify(public_key, payload: bytes, signature_b64: str) -> None:
    from cryptography.exceptions import InvalidSignature as CryptoInvalid
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        raw = base64.b64decode(signature_b64, validate=True)
        public_key.verify(raw, payload, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidSignature("the sigstore signature annotation is not base64 of an ECDSA signature") from None
    except CryptoInvalid:
        raise InvalidSignature("the sigstore signature does not verify with the policy's public key") from None


def fingerprint(public_key) -> str:
    """SHA-256 of the DER public key, to say which key signed."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
