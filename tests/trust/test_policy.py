"""containers-policy.json parsing: every requirement type and matcher, scope selection, and one-line errors naming the key."""

from __future__ import annotations

import base64
import json

import pytest

from pallet.kernel.trust import policy as policies
from pallet.kernel.trust import scopes
from pallet.kernel.images import reference as refs

FULL = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "registry.example.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k/a.gpg"}],
            "registry.example.com/team/app": [{"type": "signedBy", "keyType": "GPGKeys",
                                               "keyPaths": ["/k/a.gpg", "/k/b.gpg"],
                                               "signedIdentity": {"type": "matchRepository"}}],
            "registry.example.com/team/app:stable": [{"type": "sigstoreSigned", "keyPath": "/k/cosign.pub",
                                                      "signedIdentity": {"type": "matchExact"}}],
            "*.example.com": [{"type": "sigstoreSigned", "keyData": base64.b64encode(b"PEM").decode()}],
            "other.example.org/x": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "a2V5",
                                     "signedIdentity": {"type": "remapIdentity", "prefix": "other.example.org",
                                                        "signedPrefix": "mirror.example.org/base"}}],
            "other.example.org/y": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "a2V5",
                                     "signedIdentity": {"type": "exactReference",
                                                        "dockerReference": "docker.io/library/busybox:1"}}],
            "other.example.org/z": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "a2V5",
                                     "signedIdentity": {"type": "exactRepository",
                                                        "dockerRepository": "docker.io/library/busybox"}}],
        },
        "dir": {"/srv/images": [{"type": "reject"}]},
        "docker-archive": {"": [{"type": "insecureAcceptAnything"}]},
    },
}


def parse(doc) -> policies.Policy:
    return policies.parse(json.dumps(doc), "policy.json")


def rule_for(policy, transport, location):
    return policies.select(policy, transport, scopes.for_image(transport, location))


def test_every_requirement_type_and_matcher_parses():
    policy = parse(FULL)
    docker = policy.transports["docker"]
    assert docker["registry.example.com"][0].key_paths == ("/k/a.gpg",)
    assert docker["registry.example.com/team/app"][0].identity.type == "matchRepository"
    assert docker["registry.example.com/team/app:stable"][0].type == "sigstoreSigned"
    assert docker["*.example.com"][0].key_data == b"PEM"
    remap = docker["other.example.org/x"][0].identity
    assert (remap.value, remap.signed_prefix) == ("other.example.org", "mirror.example.org/base")
    assert docker["other.example.org/y"][0].identity.value == "docker.io/library/busybox:1"
    assert docker["registry.example.com"][0].identity.type == "matchRepoDigestOrExact"   # the default matcher


@pytest.mark.parametrize("location, rule", [
    ("registry.example.com/team/app:stable", 'transports.docker["registry.example.com/team/app:stable"]'),
    ("registry.example.com/team/app:dev", 'transports.docker["registry.example.com/team/app"]'),
    ("registry.example.com/team/other", 'transports.docker["registry.example.com"]'),
    ("mirror.example.com/x", 'transports.docker["*.example.com"]'),
    ("a.b.example.com/x", 'transports.docker["*.example.com"]'),
    ("busybox", 'transports.docker[""]'),
])
def test_most_specific_docker_scope_wins(location, rule):
    assert rule_for(parse(FULL), "docker", location)[0] == rule


def test_path_transports_match_parent_directories_then_default():
    policy = parse(FULL)
    assert rule_for(policy, "dir", "/srv/images/app")[0] == 'transports.dir["/srv/images"]'
    assert rule_for(policy, "dir", "/elsewhere")[0] == "default"
    assert rule_for(policy, "oci", "/srv/images/layout:t")[0] == "default"
    assert rule_for(policy, "docker-archive", "/tmp/x.tar")[0] == 'transports.docker-archive[""]'


def test_docker_scopes_are_most_specific_first():
    ref = refs.parse("a.b.example.com/ns/app:1")
    assert scopes.docker(ref) == ["a.b.example.com/ns/app:1", "a.b.example.com/ns/app", "a.b.example.com/ns",
                                  "a.b.example.com", "*.b.example.com", "*.example.com", "*.com"]


def test_missing_policy_file_falls_back_to_accept_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(policies, "DEFAULT_PATHS", (tmp_path / "none.json",))
    assert [r.type for r in policies.load().default] == ["insecureAcceptAnything"]


def test_named_policy_file_must_exist(tmp_path):
    with pytest.raises(policies.PolicyError, match="cannot read policy .*missing.json: no such file"):
        policies.load(tmp_path / "missing.json")


@pytest.mark.parametrize("doc, message", [
    ({}, 'top level: "default" is required'),
    ({"default": []}, "default: must be a non-empty list"),
    ({"default": [{"type": "accept"}]}, 'default\\[0\\].type: unknown requirement type "accept"'),
    ({"default": [{"type": "reject", "keyPath": "/x"}]}, 'default\\[0\\]: unknown key "keyPath"'),
    ({"default": [{"type": "signedBy", "keyPath": "/x"}]}, 'default\\[0\\]: "keyType" is required'),
    ({"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/x"}]},
     'default\\[0\\].keyType: "X509Certificates" is not supported'),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]},
     "default\\[0\\]: exactly one of keyPath, keyPaths, keyData is required"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "keyData": "eA=="}]},
     "exactly one of keyPath, keyPaths, keyData is required \\(found keyPath, keyData\\)"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "not base64!"}]},
     "default\\[0\\].keyData: is not valid base64"),
    ({"default": [{"type": "sigstoreSigned", "fulcio": {}}]}, "default\\[0\\].fulcio: Fulcio certificates"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "signedIdentity": {"type": "matchSomething"}}]},
     'default\\[0\\].signedIdentity.type: unknown signedIdentity type "matchSomething"'),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "signedIdentity": {"type": "exactReference", "dockerReference": "busybox:1"}}]},
     "signedIdentity.dockerReference: \"busybox:1\" must start with a registry host"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "signedIdentity": {"type": "exactReference", "dockerReference": "docker.io/library/busybox"}}]},
     "must name a tag or a digest"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "signedIdentity": {"type": "exactRepository", "dockerRepository": "docker.io/x:1"}}]},
     "must be a repository, without tag or digest"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                   "signedIdentity": {"type": "remapIdentity", "prefix": "example.com"}}]},
     'signedIdentity: "signedPrefix" is required'),
    ({"default": [{"type": "reject"}], "transports": {"dockre": {}}}, 'transports.dockre: unknown transport'),
    ({"default": [{"type": "reject"}], "transports": {"docker": {"busybox": [{"type": "reject"}]}}},
     'transports.docker\\["busybox"\\]: invalid docker scope'),
    ({"default": [{"type": "reject"}], "transports": {"dir": {"relative/path": [{"type": "reject"}]}}},
     'transports.dir\\["relative/path"\\]: invalid dir scope'),
    ({"default": [{"type": "reject"}], "transports": {"docker": {"example.com": []}}},
     'transports.docker\\["example.com"\\]: must be a non-empty list'),
    ({"default": [{"type": "reject"}], "extra": 1}, 'top level: unknown key "extra"'),
])
def test_malformed_policy_names_the_key(doc, message):
    with pytest.raises(policies.PolicyError, match="invalid policy policy.json: " + ".*" + message):
        parse(doc)


def test_json_syntax_error_names_line_and_column():
    with pytest.raises(policies.PolicyError, match="invalid policy p.json: line 3 column 24: Expecting value"):
        policies.parse('{\n  "default": [\n    {"type": "reject"},,\n  ]\n}', "p.json")
