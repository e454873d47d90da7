"""Policy scopes of an image, most specific first, as containers/image derives them per transport."""

from __future__ import annotations

import os

from pallet.kernel.images import reference as refs


def docker(ref: refs.Reference) -> list[str]:
    """``HOST/NS/REPO:TAG``, ``HOST/NS/REPO``, ``HOST/NS``, ``HOST``, then ``*.DOMAIN`` wildcards of the host."""
    scopes = [str(ref)]
    name = ref.name
    while True:
        scopes.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = ref.domain
    while "." in host:
        host = host.split(".", 1)[1]
        scopes.append("*." + host)
    return list(dict.fromkeys(scopes))


def path_scopes(location: str) -> list[str]:
    """For dir:, oci: and archives: ``/a/b/c:ref``, ``/a/b/c``, then each parent directory up to ``/``."""
    path, sep, name = location.partition(":")
    path = os.path.abspath(path) if path else "/"
    scopes = [f"{path}:{name}"] if sep and name else []
    while True:
        scopes.append(path)
        if path == "/":
            break
        path = os.path.dirname(path)
    return scopes


def for_image(transport: str, location: str) -> list[str]:
    if transport == "docker":
        return docker(refs.parse(location))
    return path_scopes(location)
