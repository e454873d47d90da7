"""signedIdentity matchers against the reference an image was pulled by (containers-policy.json semantics)."""

from __future__ import annotations

import pytest

from pallet.kernel.images import reference as refs
from pallet.kernel.trust.identity import matches
from pallet.kernel.trust.policy import SignedIdentity

TAGGED = refs.parse("example.com/ns/app:1")
PINNED = refs.parse("example.com/ns/app@sha256:" + "a" * 64)


@pytest.mark.parametrize("identity, image, claimed, ok", [
    (SignedIdentity("matchExact"), TAGGED, "example.com/ns/app:1", True),
    (SignedIdentity("matchExact"), TAGGED, "example.com/ns/app:2", False),
    (SignedIdentity("matchExact"), TAGGED, "example.com/ns/app", False),
    (SignedIdentity("matchExact"), PINNED, "example.com/ns/app:1", False),
    (SignedIdentity("matchRepoDigestOrExact"), TAGGED, "example.com/ns/app:1", True),
    (SignedIdentity("matchRepoDigestOrExact"), TAGGED, "example.com/ns/app:2", False),
    (SignedIdentity("matchRepoDigestOrExact"), PINNED, "example.com/ns/app:anything", True),
    (SignedIdentity("matchRepoDigestOrExact"), PINNED, "example.com/ns/other:1", False),
    (SignedIdentity("matchRepository"), TAGGED, "example.com/ns/app:2", True),
    (SignedIdentity("matchRepository"), TAGGED, "example.com/ns/app2:1", False),
    (SignedIdentity("exactReference", "docker.io/library/busybox:1"), TAGGED, "busybox:1", True),
    (SignedIdentity("exactReference", "docker.io/library/busybox:1"), TAGGED, "example.com/ns/app:1", False),
    (SignedIdentity("exactReference", "docker.io/library/busybox:1"), None, "docker.io/library/busybox:1", True),
    (SignedIdentity("exactRepository", "docker.io/library/busybox"), TAGGED, "busybox:any", True),
    (SignedIdentity("exactRepository", "docker.io/library/busybox"), TAGGED, "busybox2:any", False),
    (SignedIdentity("remapIdentity", "example.com/ns", "upstream.org/base"), TAGGED, "upstream.org/base/app:1", True),
    (SignedIdentity("remapIdentity", "example.com/ns", "upstream.org/base"), TAGGED, "example.com/ns/app:1", False),
    (SignedIdentity("remapIdentity", "example.com/ns", "upstream.org/base"), PINNED, "upstream.org/base/app:x", True),
    # the prefix matches whole components only: example.com/n is no prefix of example.com/ns/app
    (SignedIdentity("remapIdentity", "example.com/n", "upstream.org"), TAGGED, "example.com/ns/app:1", True),
    (SignedIdentity("remapIdentity", "example.com/n", "upstream.org"), TAGGED, "upstream.org/s/app:1", False),
    (SignedIdentity("matchRepoDigestOrExact"), None, "example.com/ns/app:1", False),
])
def test_matcher(identity, image, claimed, ok):
    assert matches(identity, image, claimed)[0] is ok


def test_mismatch_reason_names_both_references():
    ok, reason = matches(SignedIdentity("matchExact"), TAGGED, "example.com/ns/app:2")
    assert not ok and '"example.com/ns/app:2"' in reason and '"example.com/ns/app:1"' in reason
