"""Volumes: the ``volume`` commands, the store's reference counting, and the local driver's real mounts."""

from __future__ import annotations

import json
import os
import re

import pytest

from pallet.kernel.config import Config
from pallet.kernel.engine import Engine
from pallet.kernel.errors import Conflict, NotFound, UsageError
from pallet.kernel.volumes import VolumeStore


@pytest.fixture
def store(tmp_path):
    engine = Engine(Config(root=tmp_path / "root", run_root=tmp_path / "run"))
    store = VolumeStore(engine)
    yield store
    # Never leave a mount behind, even when a test failed halfway.
    for record in store.all():
        for cid in list(record.mounted_by):
            store.unmount(record.name, cid)


def fstype_at(path) -> str | None:
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(path):
                return right.split()[0]
    return None


def test_create_ls_inspect_rm_through_the_cli(pallet):
    assert pallet("volume", "create", "data1", check=True).stdout == "data1\n"
    anonymous = pallet("volume", "create", "--label", "team=db", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous)
    listing = pallet("volume", "ls", check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", listing[0]) == ["DRIVER", "VOLUME NAME"]
    assert sorted(line.split()[1] for line in listing[1:]) == sorted(["data1", anonymous])
    assert pallet("volume", "ls", "-q", "--filter", "label=team=db", check=True).stdout == anonymous + "\n"
    assert pallet("volume", "ls", "-q", "-f", "name=data", check=True).stdout == "data1\n"
    [info] = json.loads(pallet("volume", "inspect", "data1", check=True).stdout)
    assert info["Name"] == "data1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Mountpoint"] == str(pallet.root / "volumes" / "data1" / "_data")
    assert info["Labels"] is None and info["Options"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["CreatedAt"])
    assert pallet("volume", "inspect", "--format", "{{.Driver}} {{.Name}}", "data1").stdout == "local data1\n"
    result = pallet("volume", "rm", "data1", "nope")
    assert result.returncode == 1
    assert result.stdout == "data1\n"
    assert result.error_lines == ["Error: No such volume: nope"]
    assert pallet("volume", "rm", "-f", "nope").returncode == 0
    assert not (pallet.root / "volumes" / "data1").exists()


def test_bad_names_options_and_filters_are_usage_errors(pallet):
    bad_name = pallet("volume", "create", "a/b")
    assert bad_name.returncode == 2 and bad_name.error_lines[0].startswith('Error: invalid volume name "a/b"')
    bad_opt = pallet("volume", "create", "-o", "colour=blue", "v1")
    assert bad_opt.returncode == 2
    assert bad_opt.error_lines == ['Error: invalid option key: "colour" (the local driver knows type, o, device)']
    assert pallet("volume", "create", "-o", "type=ext4", "v1").returncode == 2
    assert pallet("volume", "ls", "-f", "colour=blue").returncode == 2
    unknown_driver = pallet("volume", "create", "-d", "nosuch", "v1")
    assert unknown_driver.returncode == 2 and 'unknown volume driver "nosuch"' in unknown_driver.stderr
    assert pallet("volume", "ls", "-q", check=True).stdout == ""


def test_create_is_idempotent_but_refuses_other_options(store):
    first = store.create("same")
    assert store.create("same").created == first.created
    with pytest.raises(Conflict, match='volume "same" already exists'):
        store.create("same", options={"type": "tmpfs"})


def test_mount_creates_missing_volumes_and_reports_emptiness(store):
    path, created_empty = store.mount("fresh", "c1")
    assert created_empty and path == store.dir / "fresh" / "_data" and path.is_dir()
    (path / "file").write_text("kept")
    store.unmount("fresh", "c1")
    path2, created_empty2 = store.mount("fresh", "c2")
    assert path2 == path and not created_empty2
    assert (path2 / "file").read_text() == "kept"
    store.unmount("fresh", "c2")
    store.unmount("fresh", "c2")  # idempotent


def test_tmpfs_volume_is_mounted_for_the_first_user_and_unmounted_after_the_last(store):
    store.create("scratch", options={"type": "tmpfs", "device": "tmpfs", "o": "size=4m"})
    path, _ = store.mount("scratch", "c1")
    assert fstype_at(path) == "tmpfs"
    store.mount("scratch", "c2")
    assert store.get("scratch").mounted_by == ["c1", "c2"]
    store.unmount("scratch", "c1")
    assert fstype_at(path) == "tmpfs"
    with pytest.raises(Conflict, match=r"remove scratch: volume is in use - \[c2\]"):
        store.remove("scratch")
    store.unmount("scratch", "c2")
    assert fstype_at(path) is None
    store.remove("scratch")
    with pytest.raises(NotFound, match="No such volume: scratch"):
        store.get("scratch")


def test_bind_volume_shows_a_host_directory_and_removal_keeps_its_data(store, tmp_path):
    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    (host_dir / "existing").write_text("host file")
    store.create("bound", options={"type": "none", "o": "bind", "device": str(host_dir)})
    path, created_empty = store.mount("bound", "c1")
    assert not created_empty
    assert (path / "existing").read_text() == "host file"
    (path / "from-container").write_text("x")
    store.unmount("bound", "c1")
    store.remove("bound")
    assert sorted(os.listdir(host_dir)) == ["existing", "from-container"]
    with pytest.raises(UsageError, match="absolute"):
        store.create("relative", options={"type": "none", "o": "bind", "device": "rel/dir"})


def test_a_container_record_referencing_a_volume_keeps_it(store):
    from pallet.kernel.containers import ContainerRecord, ContainerStore

    store.create("db-data")
    anonymous = store.create().name
    record = ContainerRecord(id="ab" * 32, name="db", status="exited",
                             host_config={"Mounts": [{"Type": "volume", "Source": "db-data", "Target": "/d"}]})
    ContainerStore(store.engine).save(record)
    assert store.in_use_by("db-data") == [record.id]
    with pytest.raises(Conflict, match="volume is in use"):
        store.remove("db-data")
    removed, _ = store.prune(all_volumes=True)
    assert removed == [anonymous]
    store.remove("db-data", ignore_container=record.id)  # what "rm -v" of that container does


def test_prune_removes_only_unused_anonymous_volumes_unless_all(pallet):
    pallet("volume", "create", "named", check=True)
    pallet("volume", "create", "--label", "keep=no", "labelled", check=True)
    anonymous = pallet("volume", "create", check=True).stdout.strip()
    (pallet.root / "volumes" / anonymous / "_data" / "blob").write_bytes(b"x" * 5000)
    declined = pallet("volume", "prune", input="n\n")
    assert "WARNING! This will remove anonymous local volumes not used by at least one container." in declined.stdout
    assert len(pallet("volume", "ls", "-q").stdout.split()) == 3
    result = pallet("volume", "prune", "-f", check=True)
    assert result.stdout == f"Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: 8.192kB\n"
    result = pallet("volume", "prune", "-f", "--all", "--filter", "label=keep", check=True)
    assert result.stdout.splitlines()[:2] == ["Deleted Volumes:", "labelled"]
    assert pallet("volume", "ls", "-q").stdout == "named\n"


# --- with real containers -------------------------------------------------------------------------
@pytest.fixture
def with_busybox(pallet):
    pallet("--storage-driver", "vfs", "image", "build-busybox", check=True)
    return pallet


def run(pallet, *args, check=True):
    return pallet("run", "--rm", "--network", "none", *args, check=check)


def test_named_volume_is_populated_from_the_image_and_outlives_its_containers(with_busybox):
    pallet = with_busybox
    assert "passwd" in run(pallet, "-v", "etcdata:/etc", "busybox", "ls", "/etc").stdout.split()
    data = pallet.root / "volumes" / "etcdata" / "_data"
    assert (data / "passwd").is_file()
    run(pallet, "-v", "etcdata:/etc", "busybox", "sh", "-c", "echo written > /etc/note")
    assert run(pallet, "--mount", "type=volume,source=etcdata,target=/other", "busybox",
               "cat", "/other/note").stdout == "written\n"
    readonly = run(pallet, "-v", "etcdata:/etc:ro", "busybox", "sh", "-c", "echo x > /etc/more", check=False)
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr
    assert not (data / "more").exists()
    assert json.loads(pallet("volume", "inspect", "etcdata", check=True).stdout)[0]["Mountpoint"] == str(data)
    assert pallet("volume", "rm", "etcdata", check=True).stdout == "etcdata\n"


def test_a_volume_used_by_a_stopped_container_cannot_be_removed(with_busybox):
    pallet = with_busybox
    pallet("run", "--network", "none", "--name", "holder", "-v", "held:/data", "busybox", "true", check=True)
    cid = pallet("inspect", "--format", "{{.Id}}", "holder", check=True).stdout.strip()
    refused = pallet("volume", "rm", "held")
    assert refused.returncode == 1
    assert refused.error_lines == [f"Error: remove held: volume is in use - [{cid}]"]
    assert pallet("volume", "ls", "-q", "--filter", "dangling=true", check=True).stdout == ""
    pallet("rm", "holder", check=True)
    assert pallet("volume", "ls", "-q", "--filter", "dangling=true", check=True).stdout == "held\n"
    pallet("volume", "rm", "held", check=True)


def test_anonymous_volume_goes_with_rm_v(with_busybox):
    pallet = with_busybox
    pallet("run", "--network", "none", "--name", "anon", "-v", "/scratch", "busybox", "touch", "/scratch/f", check=True)
    [name] = pallet("volume", "ls", "-q", check=True).stdout.split()
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    assert (pallet.root / "volumes" / name / "_data" / "f").exists()
    pallet("rm", "-v", "anon", check=True)
    assert pallet("volume", "ls", "-q", check=True).stdout == ""


def test_tmpfs_volume_in_a_container(with_busybox):
    pallet = with_busybox
    pallet("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "mem", check=True)
    mounts = run(pallet, "-v", "mem:/mem", "busybox", "grep", " /mem ", "/proc/mounts").stdout
    assert mounts.startswith("tmpfs /mem tmpfs ") and "size=1024k" in mounts
    data = pallet.root / "volumes" / "mem" / "_data"
    assert fstype_at(data) is None, "the tmpfs must be unmounted when the last container is gone"
