"""The simple-signing payload both signature kinds sign: which manifest digest, under which docker reference.

GPG simple signing uses ``"type": "atomic container signature"``; sigstore/cosign uses
``"cosign container image signature"``. The ``critical`` part is read strictly (unknown keys
reject the signature, as containers/image does); ``optional`` is informational.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pallet.kernel import __version__
from pallet.kernel.errors import PalletError

GPG_TYPE = "atomic container signature"
SIGSTORE_TYPE = "cosign container image signature"


class InvalidSignature(PalletError):
    """A signature that does not verify or does not say what a signature must."""


@dataclass(frozen=True)
class Payload:
    docker_reference: str
    manifest_digest: str
    type: str
    creator: str | None = None
    timestamp: int | None = None


def make(docker_reference: str, manifest_digest: str, kind: str) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": manifest_digest}, "type": kind},
           "optional": {"creator": f"pallet {__version__}", "timestamp": int(time.time())}}
    return json.dumps(doc, separators=(",", ":")).encode()


def _exact(doc, keys: set[str], what: str) -> dict:
    if not isinstance(doc, dict) or set(doc) != keys:
        raise InvalidSignature(f"signature payload: {what} must have exactly the keys {', '.join(sorted(keys))}")
    return doc


def parse(data: bytes, kind: str) -> Payload:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidSignature("signature payload is not JSON") from None
    if not isinstance(doc, dict) or "critical" not in doc or not set(doc) <= {"critical", "optional"}:
        raise InvalidSignature("signature payload must have a critical part and nothing but an optional one")
    critical = _exact(doc["critical"], {"identity", "image", "type"}, "critical")
    if critical["type"] != kind:
        raise InvalidSignature(f'signature payload type is {json.dumps(critical["type"])}, expected "{kind}"')
    identity = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
    image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
    reference, digest = identity["docker-reference"], image["docker-manifest-digest"]
    if not isinstance(reference, str) or not isinstance(digest, str):
        raise InvalidSignature("signature payload identity and digest must be strings")
    optional = doc.get("optional") or {}
    if not isinstance(optional, dict):
        raise InvalidSignature("signature payload optional part must be an object")
    creator = optional.get("creator") if isinstance(optional.get("creator"), str) else None
    timestamp = optional.get("timestamp") if isinstance(optional.get("timestamp"), int) else None
    return Payload(reference, digest, kind, creator, timestamp)
