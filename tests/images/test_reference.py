"""Docker reference normalisation: the short names users type and what they mean."""

from __future__ import annotations

import pytest

from pallet.kernel.errors import UsageError
from pallet.kernel.images import reference as refs


@pytest.mark.parametrize("text, full, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("localhost/x:y", "localhost/x:y", "localhost/x:y"),
    ("127.0.0.1:5000/a/b/c:v1.0-rc_1", "127.0.0.1:5000/a/b/c:v1.0-rc_1", "127.0.0.1:5000/a/b/c:v1.0-rc_1"),
    ("quay.io/org/img", "quay.io/org/img:latest", "quay.io/org/img:latest"),
])
def test_short_names_are_normalised_like_docker(text, full, familiar):
    ref = refs.parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_digest_reference_has_no_default_tag():
    digest = "sha256:" + "a" * 64
    ref = refs.parse(f"busybox@{digest}")
    assert ref.tag is None and ref.digest == digest
    assert ref.reference == digest
    assert str(ref) == f"docker.io/library/busybox@{digest}"


@pytest.mark.parametrize("text", ["", "Busybox", "busybox:", "a//b", "busybox@sha256:abc", "-x", "x:tag with space",
                                  "busybox:" + "t" * 129])
def test_invalid_references_are_usage_errors(text):
    with pytest.raises(UsageError):
        refs.parse(text)


def test_id_prefixes_are_recognised():
    assert refs.looks_like_id("aeaded420cec")
    assert refs.looks_like_id("sha256:" + "0" * 64)
    assert not refs.looks_like_id("busybox")
