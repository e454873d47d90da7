"""The contrib vendor package's volume driver, pip-installed: a third-party volume driver used by containers."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from tests.kernel.conftest import pip_install_target


@pytest.fixture(scope="module")
def vendor_env(tmp_path_factory):
    target = tmp_path_factory.mktemp("vendor-volume-site")
    pip_install_target(REPO / "contrib" / "pallet-vendor-example", target)
    return {"PYTHONPATH": str(target)}


def test_vendor_volume_driver_is_listed_as_third_party(pallet, vendor_env):
    rows = json.loads(pallet("plugins", "ls", "--kind", "volume", "--json", env=vendor_env, check=True).stdout)
    found = {row["Name"]: row for row in rows}
    assert found["imagevol"]["Origin"] == "third-party"
    assert found["imagevol"]["Distribution"] == "pallet-vendor-example"
    assert found["local"]["Origin"] == "built-in"


def test_a_container_writes_into_a_vendor_volume_of_fixed_size(pallet, vendor_env):
    pallet("--storage-driver", "vfs", "image", "build-busybox", check=True)
    pallet("volume", "create", "-d", "imagevol", "-o", "size=16M", "sized", env=vendor_env, check=True)
    listing = pallet("volume", "ls", env=vendor_env, check=True).stdout.splitlines()
    assert listing[1].split() == ["imagevol", "sized"]
    run = ("run", "--rm", "--network", "none", "-v", "sized:/data", "busybox")
    out = pallet(*run, "sh", "-c", "echo kept > /data/f && df -k /data | tail -1", env=vendor_env, check=True)
    assert int(out.stdout.split()[1]) < 16 * 1024  # an ext4 of 16 MiB, not the host's filesystem
    assert pallet(*run, "cat", "/data/f", env=vendor_env, check=True).stdout == "kept\n"
    full = pallet(*run, "dd", "if=/dev/zero", "of=/data/big", "bs=1M", "count=32", env=vendor_env)
    assert full.returncode != 0 and "No space left on device" in full.stderr
    assert not (pallet.root / "volumes" / "sized" / "_data" / "f").exists(), "unmounted after the last container"
    pallet("volume", "rm", "sized", env=vendor_env, check=True)
    assert not (pallet.root / "volumes" / "sized").exists()
    unknown = pallet("volume", "create", "-d", "imagevol", "-o", "colour=red", "xx", env=vendor_env)
    assert unknown.returncode == 2 and unknown.error_lines == ['Error: imagevol: unknown option "colour" (known: size)']
