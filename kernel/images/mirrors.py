"""Where a pull reads an image from: registry mirrors tried in order, then the registry itself.

Two shapes in ``pallet.toml``, both read here:

- Docker's ``registry-mirrors``, for Docker Hub images only::

      [registries]
      mirrors = ["http://127.0.0.1:5000", "https://mirror.example.com"]

- podman's ``registries.conf`` ``[[registry]]`` tables, for any registry or repository prefix::

      [[registries.registry]]
      prefix = "quay.io/team"                 # or "*.example.com"; the longest matching prefix wins
      location = "internal.example.com/quay"  # optional: where the prefix really lives
      insecure = false                        # plain HTTP / unverified TLS for ``location``
      blocked = false                         # refuse pulls of matching images
      [[registries.registry.mirror]]
      location = "127.0.0.1:5001/quay-team"
      insecure = true
      pull-from-mirror = "all"                # or "digest-only", "tag-only"

A reference names its registry as Docker's short-name rule says (``busybox`` is
``docker.io/library/busybox:latest``, :mod:`pallet.kernel.images.reference`), so an air-gapped
host with a mirror runs ``busybox`` or ``alpine:3.10`` unchanged. Mirrors are only read from:
the image keeps its own name and its repo digest names the registry it was asked from.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.images import reference as refs

PULL_FROM = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Source:
    """One place to read an image from: the reference as that place names it."""

    ref: refs.Reference
    insecure: bool = False   # plain HTTP or unverified TLS allowed (besides loopback, which always is)
    mirror: bool = False     # a failure here falls back to the next source

    @property
    def host(self) -> str:
        return self.ref.domain


def _docker_mirror(url: str, where: str) -> tuple[str, bool]:
    """``http://127.0.0.1:5000`` -> ("127.0.0.1:5000", insecure=True); Docker's rule: a scheme and a host only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f'invalid registry mirror "{url}" in {where}: expected http:// or https:// and a host')
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise UsageError(f'invalid registry mirror "{url}" in {where}: a mirror is SCHEME://HOST[:PORT], no path')
    return parts.netloc, parts.scheme == "http"


def _matches(prefix: str, ref: refs.Reference) -> bool:
    if prefix.startswith("*."):
        return ref.domain.endswith(prefix[1:])
    name = ref.name
    return name == prefix or name.startswith(prefix.rstrip("/") + "/")


def _rewrite(ref: refs.Reference, prefix: str, location: str, where: str) -> refs.Reference:
    """``ref`` with the part ``prefix`` matched replaced by ``location`` (the whole host for a ``*.`` prefix)."""
    matched = ref.domain if prefix.startswith("*.") else prefix.rstrip("/")
    text = location.rstrip("/") + ref.name[len(matched):]
    text += (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    try:
        rewritten = refs.parse(text)
    except PalletError as exc:
        raise UsageError(f'invalid location "{location}" in {where}: {exc}') from None
    if rewritten.domain == refs.DEFAULT_DOMAIN and not location.startswith(refs.DEFAULT_DOMAIN):
        raise UsageError(f'invalid location "{location}" in {where}: it must start with a registry host')
    return rewritten


def _entry(entries, ref: refs.Reference, where: str) -> dict | None:
    """The ``[[registries.registry]]`` table with the longest prefix matching ``ref``."""
    best = None
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("prefix") or entry.get("location"), str):
            raise UsageError(f"invalid [[registries.registry]] in {where}: each needs a prefix or a location")
        prefix = entry.get("prefix") or entry["location"]
        if _matches(prefix, ref) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, entry)
    return None if best is None else {**best[1], "prefix": best[0]}


def sources(config, ref: refs.Reference) -> list[Source]:
    """Where to pull ``ref`` from, in order: its mirrors, then the registry (or the ``location`` it was moved to)."""
    settings = config.section("registries")
    where = str(config.config_path)
    entry = _entry(settings.get("registry") or [], ref, where)
    if entry and entry.get("blocked"):
        raise PalletError(f"registry {entry['prefix']} is blocked in {where}: {ref.familiar()} is not pulled")
    found: list[Source] = []
    if ref.domain == refs.DEFAULT_DOMAIN:
        mirrors = settings.get("mirrors") or []
        if not isinstance(mirrors, list):
            raise UsageError(f"invalid [registries] mirrors in {where}: expected a list of URLs")
        for url in mirrors:
            host, insecure = _docker_mirror(str(url), where)
            found.append(Source(refs.Reference(host, ref.path, ref.tag, ref.digest), insecure, True))
    primary = Source(ref, bool(entry and entry.get("insecure")))
    if entry:
        for mirror in entry.get("mirror") or []:
            if not isinstance(mirror, dict) or not isinstance(mirror.get("location"), str):
                raise UsageError(f"invalid [[registries.registry.mirror]] in {where}: each needs a location")
            pull_from = mirror.get("pull-from-mirror", "all")
            if pull_from not in PULL_FROM:
                raise UsageError(f'invalid pull-from-mirror "{pull_from}" in {where}: expected one of '
                                 + ", ".join(PULL_FROM))
            if (pull_from == "digest-only" and not ref.digest) or (pull_from == "tag-only" and ref.digest):
                continue
            found.append(Source(_rewrite(ref, entry["prefix"], mirror["location"], where),
                                bool(mirror.get("insecure")), True))
        if entry.get("location"):
            primary = Source(_rewrite(ref, entry["prefix"], entry["location"], where), bool(entry.get("insecure")))
    return found + [primary]


def docker_mirrors(config) -> list[str]:
    """Docker Hub's mirrors as configured (``docker info``'s Registry Mirrors)."""
    mirrors = config.section("registries").get("mirrors") or []
    return [str(m) for m in mirrors] if isinstance(mirrors, list) else []
