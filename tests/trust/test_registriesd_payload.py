"""registries.d lookup (scope precedence, old key names, errors) and the strict simple-signing payload."""

from __future__ import annotations

import json

import pytest

from pallet.kernel.errors import PalletError
from pallet.kernel.images import reference as refs
from pallet.kernel.trust import payload as payloads
from pallet.kernel.trust import registriesd


def _write(directory, name, text):
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)


def test_most_specific_scope_then_default_and_old_key_names(tmp_path):
    d = tmp_path / "registries.d"
    _write(d, "a.yaml", "default-docker:\n  sigstore: file:///default\n"
                        "docker:\n  example.com:\n    lookaside: https://sigs.example.com\n")
    _write(d, "b.yaml", "docker:\n  example.com/team/app:\n    sigstore-staging: file:///staging\n"
                        "    use-sigstore-attachments: true\n")
    config = registriesd.load(d)
    app, other = refs.parse("example.com/team/app:1"), refs.parse("elsewhere.org/x")
    assert config.lookaside(app) == "https://sigs.example.com"        # app's scope sets only the staging
    assert config.lookaside(app, write=True) == "file:///staging"
    assert config.lookaside(refs.parse("example.com/other")) == "https://sigs.example.com"
    assert config.lookaside(other) == "file:///default"
    assert config.use_attachments(app) and not config.use_attachments(other)


def test_signature_urls_follow_the_lookaside_layout(tmp_path):
    digest = "sha256:" + "ab" * 32
    ref = refs.parse("example.com/team/app:1")
    url = registriesd.write((tmp_path / "store").as_uri(), ref, digest, b"one")
    assert url.endswith(f"/store/team/app@sha256={'ab' * 32}/signature-1")
    registriesd.write((tmp_path / "store").as_uri(), ref, digest, b"two")
    assert registriesd.read((tmp_path / "store").as_uri(), ref, digest) == [b"one", b"two"]


@pytest.mark.parametrize("text, message", [
    ("docker:\n  example.com:\n    lookside: file:///x\n", 'unknown key "lookside"'),
    ("docker:\n  example.com:\n    lookaside: ftp://x\n", "must be a file://, http:// or https:// URL"),
    ("docker:\n  example.com:\n    use-sigstore-attachments: yes please\n", "must be true or false"),
    ("docker: [\n", "at line 2 column 1"),
    ("registries: {}\n", "only default-docker and docker are allowed"),
])
def test_bad_registries_d_is_one_clear_error(tmp_path, text, message):
    _write(tmp_path / "d", "bad.yaml", text)
    with pytest.raises(PalletError, match=message):
        registriesd.load(tmp_path / "d")


def test_scope_configured_twice_is_refused(tmp_path):
    d = tmp_path / "d"
    _write(d, "a.yaml", "docker:\n  example.com:\n    lookaside: file:///a\n")
    _write(d, "b.yaml", "docker:\n  example.com:\n    lookaside: file:///b\n")
    with pytest.raises(PalletError, match='scope "example.com" is configured twice'):
        registriesd.load(d)


def test_payload_round_trip_and_strict_critical_part():
    digest = "sha256:" + "0" * 64
    made = payloads.make("example.com/app:1", digest, payloads.GPG_TYPE)
    parsed = payloads.parse(made, payloads.GPG_TYPE)
    assert (parsed.docker_reference, parsed.manifest_digest) == ("example.com/app:1", digest)
    assert parsed.creator.startswith("pallet")
    with pytest.raises(payloads.InvalidSignature, match="expected \"cosign container image signature\""):
        payloads.parse(made, payloads.SIGSTORE_TYPE)
    doc = json.loads(made)
    doc["critical"]["image"]["extra"] = 1
    with pytest.raises(payloads.InvalidSignature, match="critical.image must have exactly"):
        payloads.parse(json.dumps(doc).encode(), payloads.GPG_TYPE)
    with pytest.raises(payloads.InvalidSignature, match="not JSON"):
        payloads.parse(b"\xff garbage", payloads.GPG_TYPE)
