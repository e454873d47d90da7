"""OCI and Docker schema-2 manifests, indexes / manifest lists and image configs: media types, parsing, platforms."""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass

from pallet.kernel.errors import PalletError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))

LAYER_COMPRESSION = {
    OCI_LAYER: None, DOCKER_LAYER: None,
    OCI_LAYER_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip", DOCKER_FOREIGN_GZIP: "gzip", OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None

    @classmethod
    def from_json(cls, value: dict, default_type: str = "") -> Descriptor:
        try:
            return cls(value.get("mediaType") or default_type, value["digest"], int(value["size"]),
                       value.get("platform"), value.get("annotations"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PalletError(f"invalid descriptor in manifest: {value!r:.200}") from None

    def to_json(self) -> dict:
        value = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            value["platform"] = self.platform
        if self.annotations:
            value["annotations"] = self.annotations
        return value


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def load_json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        start = data[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PalletError(f"{what} is not valid JSON (starts with {start!r})") from None
    if not isinstance(value, dict):
        raise PalletError(f"{what} is not a JSON object")
    return value


def media_type_of(data: bytes, declared: str = "") -> str:
    """The manifest's media type: its own ``mediaType`` field, else the declared one, else by shape."""
    value = load_json(data, "manifest")
    found = value.get("mediaType") or declared.split(";")[0].strip()
    if found in MANIFESTS or found in INDEXES:
        return found
    if "manifests" in value:
        return OCI_INDEX
    if "config" in value and "layers" in value:
        return OCI_MANIFEST
    if value.get("schemaVersion") == 1:
        raise PalletError("Docker schema 1 manifests are not supported (deprecated by Docker in 2019)")
    raise PalletError(f'unsupported manifest media type "{found or "unknown"}"')


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    value = load_json(data, "manifest")
    media_type = media_type_of(data, media_type)
    if media_type not in MANIFESTS:
        raise PalletError(f'expected an image manifest, got "{media_type}"')
    if not isinstance(value.get("layers"), list) or not isinstance(value.get("config"), dict):
        raise PalletError("image manifest lacks config or layers")
    config = Descriptor.from_json(value["config"], OCI_CONFIG)
    layers = [Descriptor.from_json(layer, OCI_LAYER_GZIP) for layer in value["layers"]]
    for layer in layers:
        if layer.media_type not in LAYER_COMPRESSION:
            raise PalletError(f'unsupported layer media type "{layer.media_type}"')
    return Manifest(media_type, config, layers)


def parse_index(data: bytes) -> list[Descriptor]:
    value = load_json(data, "image index")
    if not isinstance(value.get("manifests"), list):
        raise PalletError("image index lacks a manifests list")
    return [Descriptor.from_json(entry, OCI_MANIFEST) for entry in value["manifests"]]


def build_manifest(config: Descriptor, layers: list[Descriptor], media_type: str = OCI_MANIFEST) -> bytes:
    value = {"schemaVersion": 2, "mediaType": media_type, "config": config.to_json(),
             "layers": [layer.to_json() for layer in layers]}
    return json.dumps(value, separators=(",", ":")).encode()


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> dict:
    machine = _platform.machine()
    result = {"os": "linux", "architecture": _ARCH.get(machine, machine)}
    if machine == "armv7l":
        result["variant"] = "v7"
    return result


def parse_platform(text: str | None) -> dict:
    if not text:
        return host_platform()
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        raise PalletError(f'invalid platform "{text}": expected OS/ARCH[/VARIANT]')
    result = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        result["variant"] = parts[2]
    return result


def platform_text(plat: dict) -> str:
    """``os/arch[/variant]`` as Docker prints a platform."""
    return "/".join(filter(None, (plat.get("os"), plat.get("architecture"), plat.get("variant"))))


def config_platform(config: dict) -> dict:
    """An image config's platform (Docker assumes linux/amd64 where a config names none)."""
    result = {"os": config.get("os") or "linux", "architecture": config.get("architecture") or "amd64"}
    if config.get("variant"):
        result["variant"] = config["variant"]
    return result


def platform_matches(actual: dict, wanted: str) -> bool:
    """``wanted`` (``os[/arch[/variant]]``, lower case) names ``actual``: what it gives must be equal."""
    parts = wanted.split("/")
    return platform_text(actual).split("/")[:len(parts)] == parts


def select_platform(entries: list[Descriptor], wanted: dict) -> Descriptor:
    """The index entry for ``wanted`` (os/architecture, variant if given); Docker's error when there is none."""
    for entry in entries:
        plat = entry.platform or {}
        if plat.get("os") == wanted["os"] and plat.get("architecture") == wanted["architecture"]:
            if "variant" not in wanted or plat.get("variant") == wanted["variant"]:
                return entry
    have = sorted({platform_text(e.platform or {}) for e in entries})
    raise PalletError(f"no matching manifest for {platform_text(wanted)} in the manifest list entries "
                      f"(available: {', '.join(have) or 'none'})")


def config_diff_ids(config: dict) -> list[str]:
    rootfs = config.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids")
    if rootfs.get("type") != "layers" or not isinstance(diff_ids, list):
        raise PalletError("image config lacks rootfs.diff_ids")
    return list(diff_ids)
