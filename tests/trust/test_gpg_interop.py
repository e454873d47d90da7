"""GPG simple signing with skopeo as the peer: skopeo signs, pallet verifies on pull; pallet signs, skopeo verifies.

Signatures travel through a registries.d lookaside store next to a real docker-registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pallet.kernel.errors import PalletError
from tests.trust.conftest import podman_pull, skopeo, stored_nothing, write_policy, write_registries_d


@pytest.fixture
def signed_setup(tmp_path, registry, gnupg, image_layout):
    """Image a pushed signed by the trusted key, image b pushed unsigned; a policy requiring the trusted key."""
    store = tmp_path / "sigstore"
    registries_d = write_registries_d(tmp_path / "registries.d", registry.host, store)
    source_a, source_b = image_layout
    common = ["--insecure-policy", "--registries.d", str(registries_d), "copy", "--dest-tls-verify=false"]
    skopeo(*common, "--sign-by", gnupg.trusted.fingerprint, source_a, f"docker://{registry.host}/app:signed",
           env=gnupg.env)
    skopeo(*common, source_b, f"docker://{registry.host}/app:unsigned", env=gnupg.env)
    policy = write_policy(tmp_path / "policy.json", {"docker": {f"{registry.host}/app": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]}})
    flags = ["--signature-policy", str(policy), "--registries.d", str(registries_d), "--tls-verify=false"]
    return registry, store, flags, policy, registries_d


def test_skopeo_signed_image_is_accepted_and_verified(tpallet, signed_setup):
    registry, store, flags, _policy, _rd = signed_setup
    result = tpallet("pull", *flags, f"{registry.host}/app:signed")
    assert result.returncode == 0, result.stderr
    assert f"{registry.host}/app:signed" in tpallet("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    verified = tpallet("image", "verify", *flags[:4], f"{registry.host}/app:signed")
    assert verified.returncode == 0, verified.stderr
    assert "accepted by transports.docker" in verified.stdout and "GPG " in verified.stdout


def test_verify_of_a_registry_reference_checks_without_pulling(tpallet, signed_setup):
    registry, _store, flags, _policy, _rd = signed_setup
    verified = tpallet("image", "verify", *flags, f"docker://{registry.host}/app:signed")
    assert verified.returncode == 0, verified.stderr
    assert "GPG " in verified.stdout and f"signed {registry.host}/app:signed" in verified.stdout
    refused = tpallet("image", "verify", *flags, f"docker://{registry.host}/app:unsigned")
    assert refused.returncode == 1 and "no GPG signature exists" in refused.stderr
    assert stored_nothing(tpallet.root)


def test_unsigned_image_is_rejected_with_nothing_stored(tpallet, signed_setup):
    registry, _store, flags, _policy, _rd = signed_setup
    result = tpallet("pull", *flags, f"{registry.host}/app:unsigned")
    assert result.returncode == 1
    assert len(result.error_lines) == 1
    assert f'trust policy rule transports.docker["{registry.host}/app"]' in result.stderr
    assert "no GPG signature exists" in result.stderr
    assert stored_nothing(tpallet.root)


def test_signature_of_another_manifest_is_rejected(tpallet, signed_setup, gnupg):
    """A tampered manifest: the tag now names other content, while the signature stays with the old digest."""
    registry, store, flags, _policy, _rd = signed_setup
    signed_dir = next(store.glob("app@sha256=*"))
    unsigned_digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                             f"docker://{registry.host}/app:unsigned").stdout.strip()
    forged = store / f"app@{unsigned_digest.replace(':', '=')}"
    shutil.copytree(signed_dir, forged)
    result = tpallet("pull", *flags, f"{registry.host}/app:unsigned")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "signature is for manifest sha256:" in result.stderr and f"the image's is {unsigned_digest}" in result.stderr
    assert stored_nothing(tpallet.root)


def test_signature_by_another_key_is_rejected(tpallet, tmp_path, registry, gnupg, image_layout):
    store = tmp_path / "sigstore"
    registries_d = write_registries_d(tmp_path / "registries.d", registry.host, store)
    skopeo("--insecure-policy", "--registries.d", str(registries_d), "copy", "--dest-tls-verify=false",
           "--sign-by", gnupg.other.fingerprint, image_layout[0], f"docker://{registry.host}/app:1", env=gnupg.env)
    policy = write_policy(tmp_path / "policy.json", {"docker": {registry.host: [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]}})
    result = tpallet("pull", "--signature-policy", str(policy), "--registries.d", str(registries_d),
                     f"{registry.host}/app:1")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "a signature by a key the rule does not trust" in result.stderr
    assert stored_nothing(tpallet.root)


def test_wrong_identity_is_rejected_unless_the_matcher_allows_it(tpallet, tmp_path, registry, gnupg, image_layout):
    store = tmp_path / "sigstore"
    registries_d = write_registries_d(tmp_path / "registries.d", registry.host, store)
    skopeo("--insecure-policy", "--registries.d", str(registries_d), "copy", "--dest-tls-verify=false",
           "--sign-by", gnupg.trusted.fingerprint, "--sign-identity", f"{registry.host}/elsewhere:1",
           image_layout[0], f"docker://{registry.host}/app:1", env=gnupg.env)
    requirement = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}
    policy = write_policy(tmp_path / "policy.json", {"docker": {registry.host: [requirement]}})
    flags = ["--signature-policy", str(policy), "--registries.d", str(registries_d)]
    result = tpallet("pull", *flags, f"{registry.host}/app:1")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert f'signature is for "{registry.host}/elsewhere:1", not "{registry.host}/app:1"' in result.stderr
    assert stored_nothing(tpallet.root)
    write_policy(policy, {"docker": {registry.host: [{**requirement, "signedIdentity": {
        "type": "exactRepository", "dockerRepository": f"{registry.host}/elsewhere"}}]}})
    assert tpallet("pull", *flags, f"{registry.host}/app:1").returncode == 0


def test_garbage_signature_is_one_line_and_stores_nothing(tpallet, signed_setup):
    registry, store, flags, _policy, _rd = signed_setup
    (next(store.glob("app@sha256=*")) / "signature-1").write_bytes(b"\x00garbage, not OpenPGP")
    result = tpallet("pull", *flags, f"{registry.host}/app:signed")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "signature 1: not a valid GPG signature" in result.stderr
    assert stored_nothing(tpallet.root)


def test_unreadable_key_is_one_line(tpallet, signed_setup, tmp_path):
    registry, _store, flags, policy, _rd = signed_setup
    write_policy(policy, {"docker": {f"{registry.host}/app": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(tmp_path / "missing.gpg")}]}})
    result = tpallet("pull", *flags, f"{registry.host}/app:signed")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "cannot read key" in result.stderr and "missing.gpg" in result.stderr
    assert stored_nothing(tpallet.root)


def test_pallet_signs_on_push_and_skopeo_verifies(tpallet, tmp_path, registry, gnupg, image_layout):
    store = tmp_path / "sigstore"
    registries_d = write_registries_d(tmp_path / "registries.d", registry.host, store)
    assert tpallet("pull", image_layout[0]).returncode == 0
    image_id = tpallet("images", "-q", "--no-trunc").stdout.split()[0]
    pushed = tpallet("push", "--tls-verify=false", "--registries.d", str(registries_d), "--sign-by",
                     gnupg.trusted.fingerprint, image_id, f"docker://{registry.host}/pushed:1")
    assert pushed.returncode == 0, pushed.stderr
    good = write_policy(tmp_path / "good.json", {"docker": {registry.host: [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]}})
    bad = write_policy(tmp_path / "bad.json", {"docker": {registry.host: [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.other.public)}]}})
    source = f"docker://{registry.host}/pushed:1"
    skopeo("--policy", str(good), "--registries.d", str(registries_d), "copy", "--src-tls-verify=false",
           source, f"dir:{tmp_path / 'copy-ok'}")
    refused = skopeo("--policy", str(bad), "--registries.d", str(registries_d), "copy", "--src-tls-verify=false",
                     source, f"dir:{tmp_path / 'copy-bad'}", check=False)
    assert refused.returncode != 0 and "rejected" in refused.stderr.lower()
    # podman pull verifies it too (podman has no --registries.d: containers/image reads
    # $HOME/.config/containers/registries.d first, so a private HOME points it at the test's)
    accepted = podman_pull(tmp_path, good, registries_d, source)
    assert accepted.returncode == 0, accepted.stderr
    rejected = podman_pull(tmp_path, bad, registries_d, source)
    assert rejected.returncode != 0 and "signature" in rejected.stderr.lower(), rejected.stderr


def test_gpgv_alone_checks_signatures_by_binary_and_armored_keys(gnupg, tmp_path, monkeypatch):
    """The quick path is gpgv over a keyring of exactly the policy's keys: with gpg itself off PATH
    it still accepts a signature by the key (exported binary or armored) and refuses another key's."""
    from pallet.kernel.trust import gpg

    signed = subprocess.run(["gpg", "--batch", "--local-user", gnupg.trusted.fingerprint, "--sign"], input=b"payload",
                            env={**os.environ, **gnupg.env}, check=True, capture_output=True).stdout
    armored = subprocess.run(["gpg", "--batch", "--armor", "--export", gnupg.trusted.fingerprint],
                             env={**os.environ, **gnupg.env}, check=True, capture_output=True).stdout
    only = tmp_path / "bin"
    only.mkdir()
    (only / "gpgv").symlink_to(shutil.which("gpgv"))
    monkeypatch.setenv("PATH", str(only))
    for key in (gnupg.trusted.public.read_bytes(), armored):
        with gpg.keyring([key]) as checker:
            assert checker.check(signed) == (b"payload", gnupg.trusted.fingerprint)
    with gpg.keyring([gnupg.other.public.read_bytes()]) as checker, pytest.raises(PalletError):
        checker.check(signed)   # gpgv refuses it, and the slow path has no gpg here: either way, refused
    with pytest.raises(PalletError):
        with gpg.keyring([gnupg.trusted.public.read_bytes()]) as checker:
            checker.check(b"\x00garbage")
