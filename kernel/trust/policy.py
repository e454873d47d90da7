"""Parse and validate a containers-policy.json file into typed requirements; one clear line per mistake.

The format is the one podman, skopeo and buildah read (containers-policy.json(5)): ``default``
and ``transports`` → transport → scope → a non-empty list of requirements. Mistakes are named
by their JSON path (``transports.docker["localhost:5000/app"][0].keyType``) and syntax errors by
line and column.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import PalletError

DEFAULT_PATHS = (Path("/etc/pallet/policy.json"), Path("/etc/containers/policy.json"))
TRANSPORTS = {"docker", "dir", "oci", "oci-archive", "docker-archive", "docker-daemon", "containers-storage",
              "atomic", "tarball", "sif", "ostree"}
PATH_TRANSPORTS = {"dir", "oci", "oci-archive", "docker-archive", "tarball", "sif", "ostree"}
IDENTITY_TYPES = {"matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference",
                  "exactRepository", "remapIdentity"}


class PolicyError(PalletError):
    """The policy file is unreadable or not a valid policy."""


@dataclass(frozen=True)
class SignedIdentity:
    """A signedIdentity matcher; ``value``/``signed_prefix`` hold dockerReference/dockerRepository/prefix."""

    type: str = "matchRepoDigestOrExact"
    value: str | None = None
    signed_prefix: str | None = None

    def to_json(self) -> dict:
        doc = {"type": self.type}
        if self.type == "exactReference":
            doc["dockerReference"] = self.value
        elif self.type == "exactRepository":
            doc["dockerRepository"] = self.value
        elif self.type == "remapIdentity":
            doc.update(prefix=self.value, signedPrefix=self.signed_prefix)
        return doc


@dataclass(frozen=True)
class Requirement:
    """One requirement; ``keys`` are key files or inline key bytes (``keyData``), at least one for signed types."""

    type: str
    key_paths: tuple[str, ...] = ()
    key_data: bytes | None = None
    key_type: str | None = None
    identity: SignedIdentity = field(default_factory=SignedIdentity)
    source: dict = field(default_factory=dict, compare=False)

    @property
    def signed(self) -> bool:
        return self.type in ("signedBy", "sigstoreSigned")

    def describe(self) -> str:
        if self.type == "signedBy":
            keys = ", ".join(self.key_paths) or "keyData"
            return f"signedBy {self.key_type} {keys}"
        if self.type == "sigstoreSigned":
            return f"sigstoreSigned {', '.join(self.key_paths) or 'keyData'}"
        return self.type


@dataclass
class Policy:
    default: list[Requirement]
    transports: dict[str, dict[str, list[Requirement]]]
    path: str = "<policy>"
    document: dict = field(default_factory=dict)


def _fail(path: str, where: str, message: str):
    raise PolicyError(f"invalid policy {path}: {where}: {message}")


def _quote(scope: str) -> str:
    return json.dumps(scope)


def _only(doc: dict, allowed: set[str], where: str, path: str) -> None:
    for key in doc:
        if key not in allowed:
            _fail(path, where, f'unknown key "{key}" (allowed: {", ".join(sorted(allowed))})')


def _string(doc: dict, key: str, where: str, path: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            _fail(path, where, f'"{key}" is required')
        return None
    if not isinstance(value, str) or not value:
        _fail(path, f"{where}.{key}", "must be a non-empty string")
    return value


def _identity(doc, where: str, path: str) -> SignedIdentity:
    from pallet.kernel.trust import identity as ids

    if doc is None:
        return SignedIdentity()
    if not isinstance(doc, dict):
        _fail(path, where, "must be an object")
    kind = doc.get("type")
    if kind not in IDENTITY_TYPES:
        _fail(path, f"{where}.type", f'unknown signedIdentity type {json.dumps(kind)} '
                                     f'(known: {", ".join(sorted(IDENTITY_TYPES))})')
    if kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        _only(doc, {"type"}, where, path)
        return SignedIdentity(kind)
    if kind == "exactReference":
        _only(doc, {"type", "dockerReference"}, where, path)
        value = _string(doc, "dockerReference", where, path)
        problem = ids.reference_problem(value, need_tag_or_digest=True)
        if problem:
            _fail(path, f"{where}.dockerReference", problem)
        return SignedIdentity(kind, value)
    if kind == "exactRepository":
        _only(doc, {"type", "dockerRepository"}, where, path)
        value = _string(doc, "dockerRepository", where, path)
        problem = ids.reference_problem(value, need_tag_or_digest=False)
        if problem:
            _fail(path, f"{where}.dockerRepository", problem)
        return SignedIdentity(kind, value)
    _only(doc, {"type", "prefix", "signedPrefix"}, where, path)
    prefix = _string(doc, "prefix", where, path)
    signed_prefix = _string(doc, "signedPrefix", where, path)
    for key, value in (("prefix", prefix), ("signedPrefix", signed_prefix)):
        problem = ids.prefix_problem(value)
        if problem:
            _fail(path, f"{where}.{key}", problem)
    return SignedIdentity(kind, prefix, signed_prefix)


def _keys(doc: dict, where: str, path: str, allowed: tuple[str, ...]) -> tuple[tuple[str, ...], bytes | None]:
    given = [key for key in allowed if key in doc]
    if len(given) != 1:
        _fail(path, where, f"exactly one of {', '.join(allowed)} is required" +
              (f" (found {', '.join(given)})" if given else ""))
    key = given[0]
    value = doc[key]
    if key == "keyPath":
        if not isinstance(value, str) or not value:
            _fail(path, f"{where}.keyPath", "must be a non-empty string")
        return (value,), None
    if key == "keyPaths":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            _fail(path, f"{where}.keyPaths", "must be a non-empty list of file names")
        return tuple(value), None
    if not isinstance(value, str) or not value:
        _fail(path, f"{where}.keyData", "must be a non-empty base64 string")
    try:
        return (), base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        _fail(path, f"{where}.keyData", "is not valid base64")


def parse_requirement(doc, where: str, path: str = "<policy>") -> Requirement:
    if not isinstance(doc, dict):
        _fail(path, where, "a requirement must be an object")
    kind = doc.get("type")
    if kind in ("insecureAcceptAnything", "reject"):
        _only(doc, {"type"}, where, path)
        return Requirement(kind, source=doc)
    if kind == "signedBy":
        _only(doc, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}, where, path)
        key_type = _string(doc, "keyType", where, path)
        if key_type != "GPGKeys":
            detail = "is not supported by pallet" if key_type in ("X509Certificates", "signedByGPGKeys",
                                                                   "signedByX509CAs") else "is unknown"
            _fail(path, f"{where}.keyType", f'"{key_type}" {detail} (use "GPGKeys")')
        paths, data = _keys(doc, where, path, ("keyPath", "keyPaths", "keyData"))
        return Requirement(kind, paths, data, key_type, _identity(doc.get("signedIdentity"),
                                                                   f"{where}.signedIdentity", path), doc)
    if kind == "sigstoreSigned":
        allowed = {"type", "keyPath", "keyData", "fulcio", "rekorPublicKeyPath", "rekorPublicKeyData",
                   "signedIdentity"}
        _only(doc, allowed, where, path)
        for unsupported in ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyData"):
            if unsupported in doc:
                _fail(path, f"{where}.{unsupported}", "Fulcio certificates and Rekor are not supported by "
                                                      "pallet (use keyPath or keyData)")
        paths, data = _keys(doc, where, path, ("keyPath", "keyData"))
        return Requirement(kind, paths, data, None, _identity(doc.get("signedIdentity"),
                                                              f"{where}.signedIdentity", path), doc)
    _fail(path, f"{where}.type", f"unknown requirement type {json.dumps(kind)} (known: insecureAcceptAnything, "
                                 "reject, signedBy, sigstoreSigned)")


def _requirements(value, where: str, path: str) -> list[Requirement]:
    if not isinstance(value, list) or not value:
        _fail(path, where, "must be a non-empty list of requirements")
    return [parse_requirement(item, f"{where}[{i}]", path) for i, item in enumerate(value)]


def _check_scope(transport: str, scope: str, where: str, path: str) -> None:
    from pallet.kernel.trust import identity as ids

    if scope == "":
        return
    if transport == "docker":
        if scope.startswith("*."):
            problem = None if "/" not in scope and len(scope) > 2 else "a wildcard scope is *.DOMAIN only"
        else:
            problem = ids.reference_problem(scope, need_tag_or_digest=None)
        if problem:
            _fail(path, where, f"invalid docker scope: {problem}")
    elif transport in PATH_TRANSPORTS:
        location = scope.split(":", 1)[0] if transport != "dir" else scope
        if not location.startswith("/") or "/../" in location + "/" or "/./" in location + "/":
            _fail(path, where, f"invalid {transport} scope: it must be an absolute, clean path")


def parse(text: str, path: str = "<policy>") -> Policy:
    """Parse policy JSON text; raise :class:`PolicyError` naming the key and position of the first mistake."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"invalid policy {path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        _fail(path, "top level", "must be a JSON object")
    _only(doc, {"default", "transports"}, "top level", path)
    if "default" not in doc:
        _fail(path, "top level", '"default" is required (for example [{"type": "reject"}])')
    default = _requirements(doc["default"], "default", path)
    transports: dict[str, dict[str, list[Requirement]]] = {}
    raw = doc.get("transports") or {}
    if not isinstance(raw, dict):
        _fail(path, "transports", "must be an object")
    for name, scopes in raw.items():
        where = f"transports.{name}"
        if name not in TRANSPORTS:
            _fail(path, where, f'unknown transport "{name}" (known: {", ".join(sorted(TRANSPORTS))})')
        if not isinstance(scopes, dict):
            _fail(path, where, "must be an object of scope -> requirements")
        transports[name] = {}
        for scope, requirements in scopes.items():
            scope_where = f"{where}[{_quote(scope)}]"
            _check_scope(name, scope, scope_where, path)
            transports[name][scope] = _requirements(requirements, scope_where, path)
    return Policy(default, transports, path, doc)


def load(path: str | Path | None = None) -> Policy:
    """The policy at ``path``, else the first of ``DEFAULT_PATHS`` that exists, else accept-anything (podman's default)."""
    candidates = [Path(path)] if path else list(DEFAULT_PATHS)
    for candidate in candidates:
        try:
            text = candidate.read_text()
        except FileNotFoundError:
            if path:
                raise PolicyError(f"cannot read policy {candidate}: no such file") from None
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy {candidate}: {getattr(exc, 'strerror', None) or exc}") from None
        return parse(text, str(candidate))
    return Policy([Requirement("insecureAcceptAnything")], {}, "<built-in default>",
                  {"default": [{"type": "insecureAcceptAnything"}]})


def select(policy: Policy, transport: str, scopes: list[str]) -> tuple[str, list[Requirement]]:
    """(rule label, requirements) for an image whose scopes are ``scopes``, most specific first.

    The label names the rule as the file does: ``transports.docker["localhost:5000/app"]`` or ``default``.
    """
    table = policy.transports.get(transport, {})
    for scope in [*scopes, ""]:
        if scope in table:
            return f"transports.{transport}[{_quote(scope)}]", table[scope]
    return "default", policy.default
