"""User namespaces: subordinate ranges, mappings in the spec, ID shifting, and root-in-container unprivileged on the host."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pallet.kernel.drivers import IdMapping
from pallet.kernel.errors import PalletError, UsageError
from pallet.plugins.security import subids, userns
from tests.security.sec_helpers import RuncBundle, base_spec

RANGE_START = 300000


@pytest.fixture
def remap_engine(tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    (tmp_path / "subuid").write_text(f"someone:100000:65536\npallet:{RANGE_START}:65536\n")
    (tmp_path / "subgid").write_text(f"pallet:{RANGE_START}:1000\npallet:{RANGE_START + 5000}:64536\n")
    config = tmp_path / "pallet.toml"
    config.write_text(f'[security]\nuserns_remap = "default"\nsubuid_file = "{tmp_path / "subuid"}"\n'
                      f'subgid_file = "{tmp_path / "subgid"}"\n')
    return Engine(Config.load(root=str(tmp_path / "root"), config_path=str(config)))


def test_the_storage_mapping_comes_from_the_userns_profile(remap_engine):
    """The engine asks the security profiles (SecurityProfile.storage_mapping); userns answers for userns_remap."""
    mapping = remap_engine.storage_remap
    assert mapping == IdMapping([{"containerID": 0, "hostID": RANGE_START, "size": 65536}],
                                [{"containerID": 0, "hostID": RANGE_START, "size": 1000},
                                 {"containerID": 1000, "hostID": RANGE_START + 5000, "size": 64536}])
    assert remap_engine.storage_home("vfs") == remap_engine.root / f"{RANGE_START}.{RANGE_START}" / "vfs"


def test_disabling_the_userns_plugin_turns_the_remap_off(remap_engine, monkeypatch):
    monkeypatch.setenv("PALLET_DISABLE_PLUGINS", "userns")
    assert remap_engine.storage_remap is None
    assert remap_engine.storage_home("vfs") == remap_engine.root / "vfs"


def test_an_empty_security_section_loads_no_profile(tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(_empty_config(tmp_path))))
    assert engine.storage_remap is None
    assert "pallet.security" not in {record.group for record in engine.plugins.plugins.values()}


def _empty_config(tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("")
    return config


def test_remap_value_forms():
    assert userns.parse_remap("default") == ("pallet", "pallet")
    assert userns.parse_remap("alice") == ("alice", "alice")
    assert userns.parse_remap("alice:staff") == ("alice", "staff")
    with pytest.raises(UsageError):
        userns.parse_remap(":staff")


def test_ranges_are_laid_end_to_end(tmp_path):
    path = tmp_path / "subgid"
    path.write_text("# comment\n1000:500000:10\nbob:600000:20\n")
    assert userns.mappings(subids.read_ranges(path, "bob", 1000)) == [
        {"containerID": 0, "hostID": 500000, "size": 10}, {"containerID": 10, "hostID": 600000, "size": 20}]
    path.write_text("bob:x:1\n")
    with pytest.raises(PalletError, match="subgid:1: malformed"):
        subids.read_ranges(path, "bob")


def test_spec_gets_user_namespace_and_mappings(secure_spec, remap_engine):
    spec, applied = secure_spec(engine=remap_engine)
    assert "userns" in applied
    linux = spec["linux"]
    assert linux["namespaces"][0] == {"type": "user"}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": RANGE_START, "size": 65536}]
    assert [m["containerID"] for m in linux["gidMappings"]] == [0, 1000]


def test_userns_host_opts_out_and_privileged_needs_it(secure_spec, remap_engine):
    spec, _ = secure_spec(engine=remap_engine, userns="host")
    assert "uidMappings" not in spec["linux"]
    with pytest.raises(UsageError, match="--userns=host"):
        secure_spec(engine=remap_engine, privileged=True)
    spec, _ = secure_spec(engine=remap_engine, privileged=True, userns="host")
    assert "uidMappings" not in spec["linux"]


def test_missing_range_names_the_fix(secure_spec, tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    (tmp_path / "subuid").write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[security]\nuserns_remap = "default"\nsubuid_file = "{tmp_path / "subuid"}"\n')
    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(config)))
    with pytest.raises(PalletError, match="pallet security userns setup"):
        secure_spec(engine=engine)


def test_add_entry_picks_a_free_range_once(tmp_path):
    path = tmp_path / "subuid"
    path.write_text("a:100000:65536\nb:300000:65536")
    assert subids.add_entry(path, "pallet") == subids.IdRange(165536, 65536)
    assert subids.add_entry(path, "pallet") == subids.IdRange(165536, 65536)
    assert path.read_text().splitlines()[-1] == "pallet:165536:65536"
    assert subids.add_entry(path, "other", size=200000) == subids.IdRange(365536, 200000)


def test_cli_setup_writes_both_files(pallet, tmp_path):
    uid_file, gid_file = tmp_path / "subuid", tmp_path / "subgid"
    done = pallet("security", "userns", "setup", "--subuid-file", str(uid_file), "--subgid-file", str(gid_file))
    assert done.returncode == 0, done.stderr
    assert uid_file.read_text() == gid_file.read_text() == "pallet:100000:65536\n"
    assert "pallet:100000:65536" in done.stdout


@pytest.fixture
def open_dir():
    """A world-traversable scratch dir (pytest's tmp is 0700, which a remapped root cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=f"pallet-sec-userns-{os.getpid()}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_container_root_is_an_unprivileged_uid_on_the_host(secure_spec, remap_engine, open_dir):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    out = open_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    spec = base_spec(args=["/bin/busybox", "sh", "-c", "touch /out/made && cat /proc/self/uid_map"])
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
    spec, _ = secure_spec(spec=spec, engine=remap_engine)
    bundle = RuncBundle(open_dir)
    (open_dir / "bundle" / "rootfs" / "out").mkdir()
    done = bundle.run(spec)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["0", str(RANGE_START), "65536"]
    made = os.stat(out / "made")
    assert (made.st_uid, made.st_gid) == (RANGE_START, RANGE_START)


def test_layers_unpack_id_shifted_and_diff_back(tmp_path):
    """The per-remap home's unpack shifts every owner (also parents the tar leaves implied); tars made
    from it carry container IDs again."""
    import io
    import tarfile

    from pallet.kernel.storage import archive

    remap = IdMapping([{"containerID": 0, "hostID": RANGE_START, "size": 65536}],
                         [{"containerID": 0, "hostID": RANGE_START + 7, "size": 65536}])
    assert remap.home_name == f"{RANGE_START}.{RANGE_START + 7}"
    assert remap.unshift(*remap.shift(33, 44)) == (33, 44)
    assert remap.shift(70000, 1) == (65534, RANGE_START + 8)  # unmapped -> overflow ID
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, uid, gid in (("etc/app/conf", 0, 0), ("home", 1000, 100)):
            info = tarfile.TarInfo(name)
            info.uid, info.gid = uid, gid
            if name == "home":
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    layer = tmp_path / "layer"
    layer.mkdir()
    archive.extract(buf, layer, id_shift=remap.shift)
    owner = lambda p: (p.lstat().st_uid, p.lstat().st_gid)  # noqa: E731
    assert owner(layer / "etc") == owner(layer / "etc/app") == owner(layer / "etc/app/conf") == remap.shift(0, 0)
    assert owner(layer / "home") == (RANGE_START + 1000, RANGE_START + 107)
    back = tarfile.open(fileobj=io.BytesIO(b"".join(archive_chunks(archive, layer, remap.unshift))))
    assert {m.name: (m.uid, m.gid) for m in back.getmembers()} == {
        "etc": (0, 0), "etc/app": (0, 0), "etc/app/conf": (0, 0), "home": (1000, 100)}


def archive_chunks(archive, root, unshift):
    writer = archive.TarWriter(unshift)
    for name, path, st in archive.walk(str(root)):
        yield from writer.add(name, path, st)
    yield writer.end()
