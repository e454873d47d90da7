"""sigstore/cosign signatures: keys pallet generates, signatures as ``sha256-<hex>.sig`` attachments in a real registry.

Debian's skopeo 1.9.3 and podman 4.3.1 are built with sigstore disabled (both answer a
sigstoreSigned policy with "Debian-local change: sigstore disabled"), so the peer checks here are skopeo reading the attachment as a plain OCI manifest and openssl
verifying the ECDSA signature over the payload blob with the public key.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.trust.conftest import skopeo, stored_nothing, write_policy

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


@pytest.fixture
def keys(tmp_path, tpallet):
    (tmp_path / "pass").write_text("correct horse\n")
    made = {}
    for name in ("cosign", "other"):
        result = tpallet("image", "trust", "generate-key", "--output-prefix", str(tmp_path / name),
                         "--passphrase-file", str(tmp_path / "pass"))
        assert result.returncode == 0, result.stderr
        made[name] = tmp_path / name
    return made


@pytest.fixture
def pushed(tmp_path, tpallet, registry, keys, image_layout):
    """Image a pushed by pallet to app:1 and signed with the cosign key; image b pushed unsigned to app:2."""
    for source, tag, sign in ((image_layout[0], "1", True), (image_layout[1], "2", False)):
        assert tpallet("pull", source).returncode == 0
        image_id = tpallet("images", "-q", "--no-trunc").stdout.split()[0]
        flags = ["--sign-by-sigstore-private-key", str(keys["cosign"]) + ".key", "--sign-passphrase-file",
                 str(tmp_path / "pass")] if sign else []
        result = tpallet("push", "--tls-verify=false", *flags, image_id, f"docker://{registry.host}/app:{tag}")
        assert result.returncode == 0, result.stderr
        tpallet("rmi", "-f", image_id)
    return registry


def _policy(tmp_path, registry, key) -> str:
    return str(write_policy(tmp_path / "policy.json", {"docker": {registry.host: [
        {"type": "sigstoreSigned", "keyPath": str(key) + ".pub"}]}}))


def test_generate_key_writes_an_encrypted_cosign_key_pair(tmp_path, keys, tpallet):
    private = (tmp_path / "cosign.key").read_text()
    assert private.startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    envelope = json.loads(base64.b64decode("".join(private.strip().splitlines()[1:-1])))
    assert envelope["kdf"]["name"] == "scrypt" and envelope["cipher"]["name"] == "nacl/secretbox"
    assert (tmp_path / "cosign.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cosign.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = tpallet("image", "trust", "generate-key", "--output-prefix", str(tmp_path / "cosign"),
                    "--passphrase-file", str(tmp_path / "pass"))
    assert again.returncode == 1 and "exists already" in again.stderr


def test_signature_is_a_cosign_attachment_that_openssl_verifies(tmp_path, pushed):
    registry = pushed
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                    f"docker://{registry.host}/app:1").stdout.strip()
    tag = digest.replace(":", "-") + ".sig"
    manifest = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/app:{tag}").stdout)
    [layer] = manifest["layers"]
    assert layer["mediaType"] == PAYLOAD_TYPE
    copy = tmp_path / "sig-copy"
    skopeo("--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{registry.host}/app:{tag}", f"dir:{copy}")
    payload = copy / layer["digest"].split(":", 1)[1]
    doc = json.loads(payload.read_bytes())
    assert doc["critical"] == {"identity": {"docker-reference": f"{registry.host}/app:1"},
                               "image": {"docker-manifest-digest": digest},
                               "type": "cosign container image signature"}
    (tmp_path / "sig.der").write_bytes(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]))
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "cosign.pub"), "-signature",
                              str(tmp_path / "sig.der"), str(payload)], capture_output=True, text=True)
    assert checked.returncode == 0 and "Verified OK" in checked.stdout


def test_pull_under_sigstore_policy_accepts_the_signed_image(tmp_path, tpallet, pushed, keys):
    policy = _policy(tmp_path, pushed, keys["cosign"])
    result = tpallet("pull", "--signature-policy", policy, f"{pushed.host}/app:1")
    assert result.returncode == 0, result.stderr
    verified = tpallet("image", "verify", "--signature-policy", policy, f"{pushed.host}/app:1")
    assert verified.returncode == 0 and "sigstore key" in verified.stdout


@pytest.mark.parametrize("tag, key, reason", [
    ("2", "cosign", "no sigstore signature exists"),
    ("1", "other", "does not verify with the policy's public key"),
])
def test_unsigned_or_other_key_is_rejected_with_nothing_stored(tmp_path, tpallet, pushed, keys, tag, key, reason):
    result = tpallet("pull", "--signature-policy", _policy(tmp_path, pushed, keys[key]), f"{pushed.host}/app:{tag}")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert f'rejected by trust policy rule transports.docker["{pushed.host}"] (sigstoreSigned' in result.stderr
    assert reason in result.stderr
    assert stored_nothing(tpallet.root)


def test_image_sign_adds_a_signature_beside_the_first(tmp_path, tpallet, pushed, keys):
    policy = _policy(tmp_path, pushed, keys["other"])
    name = f"{pushed.host}/app:1"
    assert tpallet("pull", "--signature-policy", _policy(tmp_path, pushed, keys["cosign"]), name).returncode == 0
    signed = tpallet("image", "sign", "--tls-verify=false", "--sign-by-sigstore-private-key",
                     str(keys["other"]) + ".key", "--sign-passphrase-file", str(tmp_path / "pass"), name)
    assert signed.returncode == 0, signed.stderr
    tpallet("rmi", name)
    assert tpallet("pull", "--signature-policy", policy, name).returncode == 0


def test_wrong_passphrase_is_one_line(tmp_path, tpallet, pushed, keys):
    (tmp_path / "wrong").write_text("nope")
    name = f"{pushed.host}/app:1"
    assert tpallet("pull", name).returncode == 0
    result = tpallet("image", "sign", "--sign-by-sigstore-private-key", str(keys["cosign"]) + ".key",
                     "--sign-passphrase-file", str(tmp_path / "wrong"), name)
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "wrong passphrase" in result.stderr


def test_push_with_a_key_that_does_not_decrypt_pushes_nothing(tmp_path, tpallet, registry, keys, image_layout):
    (tmp_path / "wrong").write_text("nope")
    assert tpallet("pull", image_layout[0]).returncode == 0
    image_id = tpallet("images", "-q", "--no-trunc").stdout.split()[0]
    result = tpallet("push", "--sign-by-sigstore-private-key", str(keys["cosign"]) + ".key", "--sign-passphrase-file",
                     str(tmp_path / "wrong"), image_id, f"docker://{registry.host}/never:1")
    assert result.returncode == 1 and len(result.error_lines) == 1 and "wrong passphrase" in result.stderr
    assert skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/never:1", check=False).returncode != 0

