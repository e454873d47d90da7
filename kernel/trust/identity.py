"""signedIdentity matchers: does the identity a signature claims fit the reference the image was pulled by?

Semantics follow containers-policy.json(5): ``matchExact``, ``matchRepoDigestOrExact`` (the
default), ``matchRepository``, ``exactReference``, ``exactRepository`` and ``remapIdentity``
(rewrite the image's prefix, then ``matchRepoDigestOrExact``).
"""

from __future__ import annotations

from pallet.kernel.errors import PalletError
from pallet.kernel.images import reference as refs

# Grammar pieces shared with the reference parser; a policy wants names written out in full, unnormalised.
_COMPONENT = refs._COMPONENT
_DOMAIN = refs._DOMAIN


def _split(text: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of a written-out reference, without normalising anything."""
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
    tag = None
    colon, slash = text.rfind(":"), text.rfind("/")
    if colon > slash and slash != -1:
        text, tag = text[:colon], text[colon + 1:]
    return text, tag, digest


def reference_problem(text: str, need_tag_or_digest: bool | None) -> str | None:
    """Why ``text`` is not a fully qualified name (HOST[/PATH][:TAG|@DIGEST]), or None.

    ``need_tag_or_digest``: True requires one, False forbids both, None allows either or neither.
    """
    name, tag, digest = _split(text)
    host, _, path = name.partition("/")
    if need_tag_or_digest is not None and not path:
        return f'"{text}" must start with a registry host and name a repository (for example docker.io/library/busybox)'
    if not _DOMAIN.match(host) or ("." not in host and ":" not in host and host != "localhost"):
        return f'"{text}" must start with a registry host (for example docker.io/library/busybox)'
    for component in path.split("/") if path else []:
        if not _COMPONENT.match(component):
            return f'"{text}" has an invalid repository component "{component}"'
    if tag is not None and not refs._TAG.match(tag):
        return f'"{text}" has an invalid tag'
    if digest is not None and not refs.is_digest(digest):
        return f'"{text}" has an invalid digest'
    if tag and digest:
        return f'"{text}" names both a tag and a digest'
    if need_tag_or_digest and not (tag or digest):
        return f'"{text}" must name a tag or a digest'
    if need_tag_or_digest is False and (tag or digest):
        return f'"{text}" must be a repository, without tag or digest'
    if (tag or digest) and not path:
        return f'"{text}" must name a repository'
    return None


def prefix_problem(text: str) -> str | None:
    """Why ``text`` is not a remapIdentity prefix (a host, a namespace or a repository), or None."""
    name, tag, digest = _split(text)
    if tag or digest:
        return f'"{text}" must not name a tag or a digest'
    return reference_problem(text, need_tag_or_digest=None)


def parse_signed(text) -> refs.Reference:
    """The normalised reference a signature claims; a bad one is a rejection of that signature."""
    if not isinstance(text, str):
        raise PalletError("the signature's docker-reference is not a string")
    try:
        return refs.parse(text, default_tag=False)
    except PalletError:
        raise PalletError(f'the signature claims an invalid docker-reference "{text}"') from None


def _repo_digest_or_exact(image: refs.Reference, signed: refs.Reference) -> bool:
    if image.digest:
        return signed.name == image.name
    if image.tag:
        return str(signed) == str(image)
    return False


def _remap(image: refs.Reference, prefix: str, signed_prefix: str) -> refs.Reference:
    name = image.name
    if name != prefix and not name.startswith(prefix + "/"):
        return image
    rewritten = signed_prefix + name[len(prefix):]
    suffix = f"@{image.digest}" if image.digest else f":{image.tag}" if image.tag else ""
    return refs.parse(rewritten + suffix, default_tag=False)


def matches(identity, image: refs.Reference | None, claimed: str) -> tuple[bool, str]:
    """(accepted, reason) for a signature claiming ``claimed`` on an image pulled as ``image`` (None: no name)."""
    signed = parse_signed(claimed)
    kind = identity.type
    if kind == "exactReference":
        want = refs.parse(identity.value, default_tag=False)
        ok = str(signed) == str(want)
        return ok, "" if ok else f'signature is for "{signed}", the rule wants exactly "{want}"'
    if kind == "exactRepository":
        want = refs.parse(identity.value, default_tag=False)
        ok = signed.name == want.name
        return ok, "" if ok else f'signature is for repository "{signed.name}", the rule wants "{want.name}"'
    if image is None:
        return False, f"the image has no registry name to match the signature's identity ({kind})"
    if kind == "remapIdentity":
        image = _remap(image, identity.value, identity.signed_prefix)
        kind = "matchRepoDigestOrExact"
    if kind == "matchExact":
        ok = bool(image.tag or image.digest) and str(signed) == str(image)
    elif kind == "matchRepository":
        ok = signed.name == image.name
    else:
        ok = _repo_digest_or_exact(image, signed)
    return ok, "" if ok else f'signature is for "{signed}", not "{image}" ({identity.type})'
