"""SBOM documents of an image's packages: SPDX 2.3 JSON and CycloneDX 1.5 JSON, each package with its purl."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from pallet.kernel import __version__

FORMATS = ("spdx-json", "cyclonedx-json")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spdx(name: str, image_id: str, packages) -> dict:
    image_ref = "SPDXRef-Image"
    spdx_packages = [{
        "name": name, "SPDXID": image_ref, "versionInfo": image_id, "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_ref}]
    for index, package in enumerate(packages, 1):
        ref = f"SPDXRef-Package-{index}"
        spdx_packages.append({
            "name": package.name, "SPDXID": ref, "versionInfo": package.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION", "sourceInfo": f"read from {package.location}",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": package.purl}]})
        relationships.append({"spdxElementId": image_ref, "relationshipType": "CONTAINS", "relatedSpdxElement": ref})
    return {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
            "documentNamespace": f"https://pallet.invalid/spdx/{image_id.replace(':', '-')}/{uuid.uuid4()}",
            "creationInfo": {"created": _now(), "creators": [f"Tool: pallet-{__version__}"]},
            "packages": spdx_packages, "relationships": relationships}


def cyclonedx(name: str, image_id: str, packages) -> dict:
    components, seen = [], set()
    for package in packages:
        if package.purl in seen:
            continue
        seen.add(package.purl)
        components.append({"type": "library", "bom-ref": package.purl, "name": package.name,
                           "version": package.version, "purl": package.purl,
                           "properties": [{"name": "pallet:location", "value": package.location}]})
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
            "metadata": {"timestamp": _now(),
                         "tools": {"components": [{"type": "application", "name": "pallet", "version": __version__}]},
                         "component": {"type": "container", "bom-ref": image_id, "name": name, "version": image_id}},
            "components": components}


def document(fmt: str, name: str, image_id: str, packages) -> dict:
    return spdx(name, image_id, packages) if fmt == "spdx-json" else cyclonedx(name, image_id, packages)
