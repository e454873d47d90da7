"""sigstore signatures attached in a registry: the cosign layout, an OCI manifest tagged ``sha256-<hex>.sig``.

Each layer of that manifest is one simple-signing payload (media type
``application/vnd.dev.cosign.simplesigning.v1+json``) whose base64 ECDSA signature sits in the
layer's ``dev.cosignproject.cosign/signature`` annotation.
"""

from __future__ import annotations

import json

from pallet.kernel.errors import PalletError
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.blobs import sha256_digest

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def tag_for(digest: str) -> str:
    algorithm, hex_part = digest.split(":", 1)
    return f"{algorithm}-{hex_part}.sig"


def _client(engine, ref: refs.Reference, tls_verify: bool):
    from pallet.kernel.images.registry import RegistryClient
    return RegistryClient(engine.config, ref.domain, tls_verify=tls_verify)


def _manifest(client, ref: refs.Reference, tag: str, scope: str) -> dict | None:
    response = client.request("GET", f"/v2/{ref.path}/manifests/{tag}", scope,
                              headers={"Accept": mf.ACCEPT})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise client._error(response, f"signature manifest {ref.path}:{tag}")
    try:
        doc = json.loads(response.content)
        assert isinstance(doc, dict) and isinstance(doc.get("layers", []), list)
        return doc
    except (ValueError, AssertionError):
        raise PalletError(f"the signature manifest {ref.path}:{tag} is not an OCI manifest") from None


def _blob(client, ref: refs.Reference, digest: str, limit: int = 4 << 20) -> bytes:
    response = client.download_blob(ref.path, digest)
    try:
        data = b"".join(response.iter_bytes())
    finally:
        response.close()
    if len(data) > limit or sha256_digest(data) != digest:
        raise PalletError(f"signature payload {digest} does not match its digest")
    return data


def read(engine, ref: refs.Reference, digest: str, tls_verify: bool = True) -> list[tuple[bytes, str]]:
    """(payload, base64 signature) of every cosign signature attached to ``digest`` in ``ref``'s repository."""
    client = _client(engine, ref, tls_verify)
    try:
        doc = _manifest(client, ref, tag_for(digest), f"repository:{ref.path}:pull")
        if doc is None:
            return []
        found = []
        for layer in doc.get("layers") or []:
            if not isinstance(layer, dict) or layer.get("mediaType") != PAYLOAD_TYPE:
                continue
            signature = (layer.get("annotations") or {}).get(ANNOTATION)
            if isinstance(signature, str) and isinstance(layer.get("digest"), str):
                found.append((_blob(client, ref, layer["digest"]), signature))
        return found
    finally:
        client.close()


def write(engine, ref: refs.Reference, digest: str, payload: bytes, signature: str, tls_verify: bool = True) -> str:
    """Add one signature to the ``sha256-<hex>.sig`` manifest (kept signatures stay); return that tag."""
    import io

    scope = f"repository:{ref.path}:pull,push"
    tag = tag_for(digest)
    client = _client(engine, ref, tls_verify)
    try:
        doc = _manifest(client, ref, tag, scope) or {}
        layers = [layer for layer in doc.get("layers") or [] if isinstance(layer, dict)]
        payload_digest = sha256_digest(payload)
        layers.append({"mediaType": PAYLOAD_TYPE, "size": len(payload), "digest": payload_digest,
                       "annotations": {ANNOTATION: signature}})
        config = json.dumps({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}},
                            separators=(",", ":")).encode()
        for blob in (payload, config):
            blob_digest = sha256_digest(blob)
            if not client.has_blob(ref.path, blob_digest, scope):
                client.upload_blob(ref.path, blob_digest, io.BytesIO(blob), len(blob), scope)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
                    "layers": layers}
        client.put_manifest(ref.path, tag, json.dumps(manifest, separators=(",", ":")).encode(), OCI_MANIFEST, scope)
        return tag
    finally:
        client.close()
