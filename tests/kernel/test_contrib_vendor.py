"""The contrib vendor package: pip-installed, its drivers appear as third-party and can be selected."""

import json
import os
import subprocess
import uuid

import pytest


def test_vendor_drivers_are_listed_as_third_party(pallet, vendor_site):
    result = pallet("plugins", "ls", "--json", env={"PYTHONPATH": str(vendor_site)})
    assert result.returncode == 0, result.stderr
    rows = {(row["Kind"], row["Name"]): row for row in json.loads(result.stdout)}
    for key in [("storage", "copyfs"), ("network", "macvlan")]:
        row = rows[key]
        assert row["Origin"] == "third-party"
        assert row["Distribution"] == "pallet-vendor-example"
        assert row["Version"] == "1.0.0"
        assert row["Status"] == "available"
    assert rows[("storage", "copyfs")]["Description"] == "directories copied from their parent (vendor example)"


def test_vendor_storage_driver_is_selected_and_recorded(pallet, vendor_site):
    env = {"PYTHONPATH": str(vendor_site)}
    result = pallet("--storage-driver", "copyfs", "storage", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["Driver"] == "copyfs"
    assert ["Vendor", "pallet-vendor-example"] in status["Status"]


@pytest.fixture
def vendor_in_process(vendor_site, monkeypatch):
    """The vendor package importable in this process; stevedore's per-process entry-point cache reset around it."""
    from stevedore import ExtensionManager

    monkeypatch.syspath_prepend(str(vendor_site))
    ExtensionManager.ENTRY_POINT_CACHE.clear()
    yield vendor_site
    ExtensionManager.ENTRY_POINT_CACHE.clear()


def test_vendor_storage_driver_works_through_the_driver_api(tmp_path, vendor_in_process):
    """Create, stack, read back and remove layers through the same calls the core makes."""
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    engine = Engine(Config.load(root=str(tmp_path / "root"), storage_driver="copyfs"))
    driver = engine.storage
    driver.create("base")
    (driver.get("base") / "hello").write_text("from base")
    driver.put("base")
    driver.create_rw("child", parent="base")
    child = driver.get("child")
    assert (child / "hello").read_text() == "from base"
    (child / "hello").write_text("changed in child")
    driver.put("child")
    assert (driver.get("base") / "hello").read_text() == "from base"
    driver.put("base")
    assert sorted(driver.layers()) == ["base", "child"]
    driver.remove("child")
    assert not driver.exists("child")
    assert (tmp_path / "root" / "storage-driver").read_text().strip() == "copyfs"


@pytest.fixture
def host_parent_link():
    """A veth link on the host to carry macvlan endpoints (this kernel has no dummy links); removed afterwards."""
    from pyroute2 import IPRoute

    name = f"pt{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
        for end in (name, f"{name}p"):
            ipr.link("set", index=ipr.link_lookup(ifname=end)[0], state="up")
    try:
        yield name
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


@pytest.fixture
def sandboxes():
    """Two network namespaces made by the test, as the core makes container sandboxes."""
    names = [f"pallet-t{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield [f"/run/netns/{name}" for name in names]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_vendor_macvlan_driver_connects_two_sandboxes(tmp_path, vendor_in_process, host_parent_link, sandboxes):
    from pallet.kernel.drivers import EndpointInfo
    from pallet.kernel.drivers import DriverContext
    from pallet.kernel.plugins import PluginManager

    driver = PluginManager().open("network", "macvlan", DriverContext(tmp_path))
    data = driver.create_network("net1", {"parent": host_parent_link}, [{"pool": "10.231.0.0/24"}])
    addresses = ["10.231.0.2/24", "10.231.0.3/24"]
    try:
        for n, (sandbox, address) in enumerate(zip(sandboxes, addresses)):
            driver.create_endpoint("net1", f"ep{n}", data, EndpointInfo(address=address), {})
            driver.join("net1", f"ep{n}", data, sandbox, {"address": address})
        ping = subprocess.run(["nsenter", f"--net={sandboxes[0]}", "busybox", "ping", "-c", "1", "-W", "2", "10.231.0.3"],
                              capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        driver.leave("net1", "ep1", data, sandboxes[1])
        links = subprocess.run(["ip", "-n", os.path.basename(sandboxes[1]), "-o", "link"],
                               capture_output=True, text=True, check=True).stdout
        assert "eth0" not in links
    finally:
        for n in range(2):
            driver.delete_endpoint("net1", f"ep{n}", data)
        driver.delete_network("net1", data)


def test_vendor_command_is_added_through_register_commands(pallet, vendor_site, tmp_path):
    """``pallet copyfs stats`` comes from the vendor's pallet_register_commands; it sees the engine's root."""
    env = {"PYTHONPATH": str(vendor_site)}
    pallet("--storage-driver", "copyfs", "import", str(one_file_tarball(tmp_path)), "hello:1", env=env, check=True)
    result = pallet("copyfs", "stats", "--json", env=env)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["Layers"] == 1 and stats["Bytes"] == 5
    assert stats["Home"] == str(pallet.root / "copyfs")
    assert "copyfs" in pallet("copyfs", "--help", env=env).stdout


def one_file_tarball(tmp_path):
    import io
    import tarfile

    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return tarball


def test_vendor_command_refuses_a_root_of_another_driver(pallet, vendor_site, tmp_path):
    env = {"PYTHONPATH": str(vendor_site)}
    pallet("--storage-driver", "vfs", "import", str(one_file_tarball(tmp_path)), "hello:1", check=True)
    result = pallet("copyfs", "stats", env=env)
    assert result.returncode == 2
    assert result.error_lines == [f'Error: {pallet.root} uses the "vfs" storage driver, not copyfs']


def test_vendor_command_is_absent_without_the_vendor_package(pallet):
    result = pallet("copyfs", "stats")
    assert result.returncode == 2
    assert "No such command 'copyfs'" in result.stderr


def test_vendor_storage_driver_passes_the_storage_kit(pallet, vendor_site, tmp_path):
    result = pallet("plugins", "check", "storage", "copyfs", "--home", str(tmp_path), env={"PYTHONPATH": str(vendor_site)},
                    timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'storage driver "copyfs" passed the conformance kit' in result.stdout
