"""SBOMs kept next to an image as OCI referrers (artifact manifests whose ``subject`` is the image), and pushed with it.

Kept under ``<root>/images/referrers/<subject hex>/`` (``<hex>.manifest`` and ``<hex>.blob``), out
of the blob store so image garbage collection leaves them alone. A registry without the
referrers API (distribution 2.8) gets the OCI 1.1 fallback: an index of the referrers tagged
``sha256-<subject hex>``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from pallet.kernel.fsutil import atomic_write
from pallet.kernel.images import manifest as mf
from pallet.kernel.images.blobs import sha256_digest

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
ARTIFACT_TYPES = {"spdx-json": "application/spdx+json", "cyclonedx-json": "application/vnd.cyclonedx+json"}


def _directory(engine, subject_digest: str) -> Path:
    return Path(engine.root) / "images" / "referrers" / subject_digest.split(":", 1)[1]


def attach(engine, subject_digest: str, subject_media_type: str, subject_size: int, fmt: str, document: bytes) -> str:
    """Keep ``document`` as a referrer of the image manifest ``subject_digest``; return the artifact manifest digest."""
    artifact_type = ARTIFACT_TYPES[fmt]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": artifact_type, "digest": sha256_digest(document), "size": len(document)}],
        "subject": {"mediaType": subject_media_type, "digest": subject_digest, "size": subject_size},
        "annotations": {"org.opencontainers.image.created": _now()},
    }, separators=(",", ":")).encode()
    digest = sha256_digest(manifest)
    directory = _directory(engine, subject_digest)
    atomic_write(directory / (sha256_digest(document).split(":", 1)[1] + ".blob"), document)
    atomic_write(directory / (digest.split(":", 1)[1] + ".manifest"), manifest)
    return digest


def _now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def kept(engine, subject_digest: str) -> list[tuple[str, bytes]]:
    directory = _directory(engine, subject_digest)
    if not directory.is_dir():
        return []
    return [("sha256:" + path.stem, path.read_bytes()) for path in sorted(directory.glob("*.manifest"))]


def push(engine, ref, subject_digest: str, tls_verify: bool = True, credentials: tuple[str, str] | None = None
         ) -> list[str]:
    """Send every kept referrer of ``subject_digest`` to ``ref``'s repository; update the fallback tag; return digests.
    ``credentials`` (user, password) win over the auth files."""
    from pallet.kernel.images.registry import RegistryClient

    referrers = kept(engine, subject_digest)
    if not referrers:
        return []
    scope = f"repository:{ref.path}:pull,push"
    client = RegistryClient(engine.config, ref.domain, tls_verify=tls_verify, credentials=credentials)
    directory = _directory(engine, subject_digest)
    try:
        entries = []
        for digest, manifest_bytes in referrers:
            manifest = json.loads(manifest_bytes)
            for descriptor in [manifest["config"], *manifest["layers"]]:
                blob = EMPTY if descriptor["mediaType"] == EMPTY_TYPE else \
                    (directory / (descriptor["digest"].split(":", 1)[1] + ".blob")).read_bytes()
                if not client.has_blob(ref.path, descriptor["digest"], scope):
                    client.upload_blob(ref.path, descriptor["digest"], io.BytesIO(blob), len(blob), scope)
            client.put_manifest(ref.path, digest, manifest_bytes, mf.OCI_MANIFEST, scope)
            entries.append({"mediaType": mf.OCI_MANIFEST, "digest": digest, "size": len(manifest_bytes),
                            "artifactType": manifest["artifactType"]})
        tag = subject_digest.replace(":", "-")
        response = client.request("GET", f"/v2/{ref.path}/manifests/{tag}", scope, headers={"Accept": mf.OCI_INDEX})
        index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": []}
        if response.status_code == 200:
            try:
                index = json.loads(response.content)
            except ValueError:
                pass
        known = {entry.get("digest") for entry in index.get("manifests", [])}
        index["manifests"] = [*index.get("manifests", []), *(e for e in entries if e["digest"] not in known)]
        client.put_manifest(ref.path, tag, json.dumps(index, separators=(",", ":")).encode(), mf.OCI_INDEX, scope)
    finally:
        client.close()
    return [digest for digest, _ in referrers]
