"""The cluster's key: who may join, and the mutual TLS between nodes (their log endpoints).

Every node of a cluster holds the same key file, the secrets key (``[secrets] key_file``), which
the nodes need anyway to open the cluster's secrets; it plays the part of Docker's join token.
The first node to join records the key's fingerprint at ``cluster`` (``KeyID``, which reveals
nothing of the key); a node that joins without the key file, or with another key, is refused,
and so is an agent whose key was changed after its node joined.

The nodes talk to each other (``service logs`` reading another node's tasks) over TLS 1.3 with
certificates on both sides. From the key, HKDF derives an Ed25519 CA key, the same on every node,
and with fixed fields (and Ed25519's deterministic signatures) the same CA certificate; nothing
of it is stored or sent. Each process that serves or asks makes a fresh leaf key with a
certificate for its node id, signed by that CA, kept in memory. A server accepts only a client
whose certificate the CA signed; a client accepts only a server whose certificate the CA signed
*for the node it meant to reach*.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import tempfile

from pallet.kernel.cluster import PREFIX, store
from pallet.kernel.errors import PalletError
from pallet.kernel.secretbox import key_id, key_id_of, key_path, read_key

CLUSTER = f"{PREFIX}cluster"
_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_NEVER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)


def _check(engine, recorded: dict, prefix: str) -> None:
    hint = f"copy the key file of a node of the cluster to {key_path(engine)} (its [secrets] key_file)"
    key = read_key(engine, missing=f"{prefix}this node has no cluster key at {key_path(engine)}: {hint}")
    if key_id_of(key) != recorded.get("KeyID"):
        raise PalletError(f"{prefix}this node's cluster key {key_path(engine)} (key id {key_id_of(key)}) is not the "
                          f"cluster's (key id {recorded.get('KeyID')}): {hint}")


def check_join(engine, etcd) -> None:
    """Refuse to join a cluster whose key this root does not hold (the first node's key becomes the cluster's)."""
    recorded = etcd.get(CLUSTER)
    if not isinstance(recorded, dict):
        # the first node: its key (made now if it has none) is the cluster's
        if etcd.create(CLUSTER, {"KeyID": key_id(engine), "CreatedAt": store.now()}):
            return
        recorded = etcd.get(CLUSTER) or {}
    _check(engine, recorded, "cannot join: ")


def check_member(engine, etcd) -> None:
    """An agent's check that its key is still the cluster's (a cluster older than the check adopts its key)."""
    recorded = etcd.get(CLUSTER)
    if not isinstance(recorded, dict):
        etcd.create(CLUSTER, {"KeyID": key_id_of(read_key(engine)), "CreatedAt": store.now()})
        recorded = etcd.get(CLUSTER) or {}
    _check(engine, recorded, "")


# --- mutual TLS -------------------------------------------------------------------------------------
def _ca(key: bytes):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.x509.oid import NameOID

    seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"pallet-cluster-tls-ca").derive(key)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pallet cluster {key_id_of(key)}")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(1)
                   .not_valid_before(_EPOCH).not_valid_after(_NEVER)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False)
                   .sign(private, None))
    return private, certificate


def _leaf(ca_key, ca_cert, node_id: str, server: bool):
    """A fresh key and a certificate for ``node_id``, signed by the cluster's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = Ed25519PrivateKey.generate()
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
                   .issuer_name(ca_cert.subject).public_key(private.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(_NEVER)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_id)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, None))
    return private, certificate


def tls_context(key: bytes, node_id: str, server: bool) -> ssl.SSLContext:
    """A TLS 1.3 context for ``node_id`` under the cluster ``key``: its own certificate, and the
    cluster's CA as the only one it trusts (a peer must show a certificate either way)."""
    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = _ca(key)
    leaf_key, leaf_cert = _leaf(ca_key, ca_cert, node_id, server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = False   # the client checks the node id itself: it dials an address
    context.load_verify_locations(cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()) + leaf_cert.public_bytes(serialization.Encoding.PEM)
    # load_cert_chain reads only files: the leaf lives in one for the instant it takes, mode 0600
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="pallet-tls-", dir=memory) as tmp:
        path = os.path.join(tmp, "leaf.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(pem)
        context.load_cert_chain(path)
    return context


def node_context(engine, server: bool) -> ssl.SSLContext:
    """This node's TLS context (its cluster key, its node id)."""
    key = read_key(engine, missing=f"this node has no cluster key at {key_path(engine)}")
    return tls_context(key, store.require_membership(engine)["ID"], server)


def peer_is(sock: ssl.SSLSocket, node_id: str) -> bool:
    """Whether the verified peer certificate of ``sock`` names ``node_id``."""
    with contextlib.suppress(AttributeError, ValueError):
        names = [value for kind, value in (sock.getpeercert() or {}).get("subjectAltName", ()) if kind == "DNS"]
        return names == [node_id]
    return False
