"""Docker image references: parse, validate and normalise (``busybox`` -> ``docker.io/library/busybox:latest``).

The grammar follows distribution/reference: an optional domain (a first component holding
``.`` or ``:``, or ``localhost``), lowercase path components, an optional ``:tag`` and an
optional ``@algorithm:hex`` digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pallet.kernel.errors import UsageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = {"index.docker.io", "registry-1.docker.io"}
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?$|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised reference. ``tag`` is None only when a digest pins the image."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: the repository, fully qualified."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker shows: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len("library/"):] if self.path.startswith("library/") else self.path
        return self.name

    @property
    def reference(self) -> str:
        """What a registry calls it in a manifest URL: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (a verified pull fetches exactly what was verified)."""
        return Reference(self.domain, self.path, None, digest)

    def familiar(self) -> str:
        return self._render(self.familiar_name)

    def __str__(self) -> str:
        return self._render(self.name)

    def _render(self, name: str) -> str:
        text = name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise ``text``; a bad reference is a usage error naming it."""
    original = text
    if not text or text != text.strip():
        raise UsageError(f'invalid reference format: "{original}"')
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest) or (digest.startswith("sha256:") and not _SHA256.match(digest)):
            raise UsageError(f'invalid reference format: "{original}" (bad digest)')
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.match(tag):
            raise UsageError(f'invalid reference format: "{original}" (bad tag "{tag}")')
    parts = text.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, components = first, parts[1:]
        if not _DOMAIN.match(domain):
            raise UsageError(f'invalid reference format: "{original}" (bad registry "{domain}")')
    else:
        domain, components = DEFAULT_DOMAIN, parts
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    for component in components:
        if not _COMPONENT.match(component):
            if component.lower() != component and _COMPONENT.match(component.lower()):
                raise UsageError(f'invalid reference format: repository name ({original}) must be lowercase')
            raise UsageError(f'invalid reference format: "{original}"')
    if domain == DEFAULT_DOMAIN and len(components) == 1:
        components = ["library", *components]
    path = "/".join(components)
    if len(domain) + 1 + len(path) > 255:
        raise UsageError(f'invalid reference format: "{original}" (repository name too long)')
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def looks_like_id(text: str) -> bool:
    """Whether ``text`` may be an image id or a unique prefix of one (``sha256:`` optional)."""
    hex_part = text[len("sha256:"):] if text.startswith("sha256:") else text
    return bool(re.fullmatch(r"[a-f0-9]{4,64}", hex_part))


def is_digest(text: str) -> bool:
    return bool(_SHA256.match(text))
