"""Where the policy applies beyond registry pulls: dir: copies with skopeo's signatures, load, and trust show/set."""

from __future__ import annotations

import json

from tests.trust.conftest import skopeo, stored_nothing, write_policy


def test_dir_copy_signed_by_skopeo_is_verified(tmp_path, tpallet, gnupg, image_layout):
    target = tmp_path / "copies" / "app"
    target.parent.mkdir()
    skopeo("--insecure-policy", "copy", "--sign-by", gnupg.trusted.fingerprint, "--sign-identity",
           "localhost/app:1", image_layout[0], f"dir:{target}", env=gnupg.env)
    assert (target / "signature-1").is_file()
    requirement = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public),
                   "signedIdentity": {"type": "exactReference", "dockerReference": "localhost/app:1"}}
    policy = write_policy(tmp_path / "policy.json", {"dir": {str(tmp_path / "copies"): [requirement]}})
    assert tpallet("pull", "--signature-policy", str(policy), f"dir:{target}").returncode == 0
    write_policy(policy, {"dir": {str(tmp_path / "copies"): [
        {**requirement, "signedIdentity": {"type": "exactReference", "dockerReference": "localhost/app:2"}}]}})
    tpallet("rmi", "-f", tpallet("images", "-q").stdout.split()[0])
    refused = tpallet("pull", "--signature-policy", str(policy), f"dir:{target}")
    assert refused.returncode == 1 and 'wants exactly "localhost/app:2"' in refused.stderr


def test_load_under_a_signature_rule_is_refused_before_reading(tmp_path, tpallet, gnupg):
    archive = tmp_path / "in" / "image.tar"
    archive.parent.mkdir()
    archive.write_bytes(b"not even read")
    policy = write_policy(tmp_path / "policy.json", {"docker-archive": {str(archive.parent): [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]}},
        default=[{"type": "insecureAcceptAnything"}])
    result = tpallet("load", "--signature-policy", str(policy), "-i", str(archive))
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert f'trust policy rule transports.docker-archive["{archive.parent}"]' in result.stderr
    assert stored_nothing(tpallet.root)


def test_reject_default_refuses_pulls_naming_the_default_rule(tmp_path, tpallet, image_layout):
    policy = write_policy(tmp_path / "policy.json", {})
    result = tpallet("pull", "--signature-policy", str(policy), image_layout[0])
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert "rejected by trust policy rule default (reject): the rule rejects every image" in result.stderr
    assert stored_nothing(tpallet.root)


def test_malformed_policy_is_one_line_naming_key_and_position(tmp_path, tpallet, image_layout):
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPth": "/k"}]}')
    result = tpallet("pull", "--signature-policy", str(policy), image_layout[0])
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert 'default[0]: unknown key "keyPth"' in result.stderr
    policy.write_text('{"default": [\n  {"type": "reject"\n]}')
    result = tpallet("pull", "--signature-policy", str(policy), image_layout[0])
    assert result.returncode == 1 and "line 3 column 1" in result.stderr
    assert stored_nothing(tpallet.root)


def test_trust_set_and_show_edit_the_policy_as_podman_does(tmp_path, tpallet, gnupg):
    policy = tmp_path / "policy.json"
    flags = ["--signature-policy", str(policy)]
    assert tpallet("image", "trust", "set", *flags, "--type", "reject", "default").returncode == 0
    assert tpallet("image", "trust", "set", *flags, "-t", "signedBy", "-f", str(gnupg.trusted.public),
                   "registry.example.com/team").returncode == 0
    assert tpallet("image", "trust", "set", *flags, "-t", "accept", "docker.io").returncode == 0
    doc = json.loads(policy.read_text())
    assert doc["default"] == [{"type": "reject"}]
    assert doc["transports"]["docker"]["registry.example.com/team"] == [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]
    shown = json.loads(tpallet("image", "trust", "show", *flags, "--json").stdout)
    assert {(row["Scope"], row["Type"]) for row in shown} == {
        ("default", "reject"), ("registry.example.com/team", "signedBy"), ("docker.io", "insecureAcceptAnything")}
    bad = tpallet("image", "trust", "set", *flags, "-t", "accept", "not a scope")
    assert bad.returncode == 1 and "invalid docker scope" in bad.stderr
    assert json.loads(policy.read_text()) == doc


def test_locally_built_images_were_never_pulled_under_a_rule(tmp_path, tpallet, gnupg):
    policy = write_policy(tmp_path / "policy.json", {"docker": {"registry.example.com": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.trusted.public)}]}})
    assert tpallet("image", "build-busybox", "-t", "registry.example.com/local:1").returncode == 0
    created = tpallet("create", "--signature-policy", str(policy), "--network", "none",
                      "registry.example.com/local:1", "/bin/true")
    assert created.returncode == 0, created.stderr
    assert tpallet("rm", created.stdout.strip()).returncode == 0


def test_build_from_is_judged_and_build_sbom_attaches(tmp_path, tpallet, registry):
    assert tpallet("image", "build-busybox").returncode == 0
    assert tpallet("push", "busybox", f"docker://{registry.host}/base:1").returncode == 0
    assert tpallet("rmi", "busybox").returncode == 0
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {registry.host}/base:1\nRUN echo built > /built\n")
    policy = write_policy(tmp_path / "policy.json", {"docker": {f"{registry.host}/base": [{"type": "reject"}]}},
                          default=[{"type": "insecureAcceptAnything"}])
    refused = tpallet("build", "--signature-policy", str(policy), "-q", "-t", "app", str(context))
    assert refused.returncode == 1 and f'trust policy rule transports.docker["{registry.host}/base"]' in refused.stderr
    assert "app" not in tpallet("images", "--format", "{{.Repository}}").stdout.split()
    write_policy(policy, {}, default=[{"type": "insecureAcceptAnything"}])
    built = tpallet("build", "--signature-policy", str(policy), "--sbom", "-t", "app", str(context))
    assert built.returncode == 0, built.stderr
    assert "Attached spdx-json SBOM sha256:" in built.stderr
    [manifest_file] = (tpallet.root / "images" / "referrers").glob("*/*.manifest")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["artifactType"] == "application/spdx+json"
    assert manifest["subject"]["digest"] == "sha256:" + manifest_file.parent.name
    document = json.loads((manifest_file.parent / (manifest["layers"][0]["digest"].split(":")[1] + ".blob")).read_text())
    assert document["spdxVersion"] == "SPDX-2.3"
    assert any(p["name"] == "busybox" for p in document["packages"])
