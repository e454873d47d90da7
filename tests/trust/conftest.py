"""Peers for trust tests: a throwaway GnuPG home with two signing keys, a local docker-registry, skopeo, policies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Pallet
from tests.registry.conftest import layer_tar, start_registry, stop_registry, umoci_image


@dataclass
class Key:
    fingerprint: str
    public: Path


@dataclass
class GnuPG:
    home: Path
    trusted: Key
    other: Key

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}


def _make_key(home: Path, name: str, out: Path) -> Key:
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@pallet.test>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys", f"{name}@pallet.test"], env=env,
                             check=True, capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    exported = subprocess.run(["gpg", "--batch", "--export", fingerprint], env=env, check=True,
                              capture_output=True).stdout
    out.write_bytes(exported)
    return Key(fingerprint, out)


@pytest.fixture(scope="session")
def gnupg():
    """Two ed25519 keys in a private GNUPGHOME (short path: gpg-agent's socket lives there); agent killed after."""
    home = Path(tempfile.mkdtemp(prefix="pt-gpg-"))
    os.chmod(home, 0o700)
    try:
        yield GnuPG(home, _make_key(home, "trusted", home / "trusted.gpg"), _make_key(home, "other", home / "other.gpg"))
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def registry(tmp_path):
    proc, handle, reg = start_registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        stop_registry(proc, handle)


@pytest.fixture
def tpallet(tmp_path, gnupg) -> Pallet:
    """pallet on vfs with private credentials and the test GNUPGHOME (for signing)."""
    return Pallet(tmp_path / "root", tmp_path / "run", env={
        "PALLET_STORAGE_DRIVER": "vfs", "PALLET_AUTH_FILE": str(tmp_path / "auth.json"),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"), **gnupg.env})


@pytest.fixture
def image_layout(tmp_path):
    """An OCI layout with two small images (tags a and b), so signatures of one can be tried on the other."""
    work = tmp_path / "build"
    work.mkdir()
    source_a = umoci_image(work, [layer_tar({"etc/hello": b"a\n"})], tag="a")
    source_b = umoci_image(work, [layer_tar({"etc/hello": b"b\n"})], tag="b")
    return source_a, source_b


def write_policy(path: Path, transports: dict, default=None) -> Path:
    path.write_text(json.dumps({"default": default or [{"type": "reject"}], "transports": transports}))
    return path


def write_registries_d(directory: Path, scope: str, store: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test.yaml").write_text(
        f"docker:\n  {scope}:\n    lookaside: {store.as_uri()}\n    lookaside-staging: {store.as_uri()}\n"
        f"    use-sigstore-attachments: true\n")
    return directory


def stored_nothing(root: Path) -> bool:
    images = root / "images"
    records = list((images / "records" / "images").glob("*")) if (images / "records" / "images").exists() else []
    blobs = list((images / "blobs" / "sha256").glob("*")) if (images / "blobs" / "sha256").exists() else []
    return not records and not blobs


def skopeo(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr}")
    return proc


def podman_pull(tmp_path, policy, registries_d, source) -> subprocess.CompletedProcess:
    """``podman pull`` into a private vfs store under ``tmp_path`` (no containers, nothing outside it)."""
    home = tmp_path / "podman-home"
    config = home / ".config" / "containers"
    config.mkdir(parents=True, exist_ok=True)
    if not (config / "registries.d").exists():
        (config / "registries.d").symlink_to(registries_d)
    state = Path(tempfile.mkdtemp(prefix="pt-podman-", dir="/tmp"))   # podman refuses a run root over 50 chars
    cmd = ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"), "--tmpdir", str(state / "tmp"),
           "--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs",
           "pull", "--tls-verify=false", "--signature-policy", str(policy), source]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)})
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_run_of_a_stored_image_follows_the_policy_in_force(tpallet, signed_setup, tmp_path, gnupg):
    """Signatures kept at pull are re-checked offline at create time; a policy now demanding another key refuses."""
    registry, _store, flags, policy, _rd = signed_setup
    name = f"{registry.host}/app:signed"
    assert tpallet("pull", *flags, name).returncode == 0
    created = tpallet("create", "--signature-policy", str(policy), "--network", "none", name, "/bin/true")
    assert created.returncode == 0, created.stderr
    tpallet("rm", created.stdout.strip())
    write_policy(policy, {"docker": {registry.host: [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gnupg.other.public)}]}})
    refused = tpallet("create", "--signature-policy", str(policy), "--network", "none", name, "/bin/true")
    assert refused.returncode != 0 and "rejected by trust policy rule" in refused.stderr
    assert "No such container" not in refused.stderr
