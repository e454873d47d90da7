"""Storage driver precedence: flag > env > config file > recorded on disk > autodetect; foreign data refused."""

import json
import os


from pallet.kernel.config import Config


def status(pallet, *args, env=None):
    result = pallet(*args, "storage", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_config(pallet, text):
    (pallet.root.parent / "pallet.toml").write_text(text)


def test_flag_beats_environment(pallet):
    data = status(pallet, "--storage-driver", "vfs", env={"PALLET_STORAGE_DRIVER": "btrfs"})
    assert data["Driver"] == "vfs"


def test_environment_beats_config_file(pallet):
    write_config(pallet, '[storage]\ndriver = "btrfs"\n')
    data = status(pallet, env={"PALLET_STORAGE_DRIVER": "vfs"})
    assert data["Driver"] == "vfs"
    assert data["ChosenBy"] == "flag or PALLET_STORAGE_DRIVER"


def test_config_file_beats_recorded_driver(pallet):
    pallet.root.mkdir(parents=True)
    (pallet.root / "storage-driver").write_text("overlay2\n")
    write_config(pallet, '[storage]\ndriver = "vfs"\n')
    data = status(pallet)
    assert data["Driver"] == "vfs"
    assert data["ChosenBy"].startswith("config ")


def test_recorded_driver_beats_autodetect(pallet):
    pallet.root.mkdir(parents=True)
    (pallet.root / "storage-driver").write_text("vfs\n")
    data = status(pallet)
    assert data["Driver"] == "vfs"
    assert data["ChosenBy"].startswith("recorded in ")


def test_config_file_named_by_flag_is_read(pallet, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('[storage]\ndriver = "btrfs"\n')
    assert status(pallet, "--config", str(other))["Driver"] == "btrfs"


def test_autodetect_takes_the_first_usable_driver_in_priority_order(pallet):
    listing = json.loads(pallet("plugins", "ls", "--kind", "storage", "--json").stdout)
    usable = {row["Name"] for row in listing if row["Status"] == "available"}
    # btrfs and zfs are only usable when the root itself is on them; here it is on /tmp.
    fs_ok = {name for name in usable if name not in ("btrfs", "zfs")}
    result = pallet("storage", "status", "--json")
    order = [n for n in ("overlay2", "btrfs", "zfs", "devicemapper", "vfs") if n in fs_ok]
    if order:
        assert json.loads(result.stdout)["Driver"] == order[0]
        assert json.loads(result.stdout)["ChosenBy"] == "autodetected"
    else:
        assert result.returncode == 1
        assert result.error_lines[0].startswith("Error: no usable storage driver on this host (overlay2: ")


def test_unknown_driver_is_a_usage_error_listing_the_known_ones(pallet):
    result = pallet("--storage-driver", "nosuchfs", "storage", "status")
    assert result.returncode == 2
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert line.startswith('Error: unknown storage driver "nosuchfs" (available: ')
    for name in ("overlay2", "btrfs", "zfs", "devicemapper", "vfs"):
        assert name in line


def test_switching_driver_with_prior_data_is_refused(pallet):
    (pallet.root / "overlay2" / "l").mkdir(parents=True)
    result = pallet("--storage-driver", "vfs", "storage", "status")
    assert result.returncode == 1
    assert result.error_lines == [
        f'Error: storage driver "vfs" requested, but {pallet.root} holds data of "overlay2"; '
        'run "pallet storage migrate --to vfs" or choose --storage-driver overlay2'
    ]
    assert sorted(os.listdir(pallet.root / "overlay2")) == ["l"]


def test_data_of_several_drivers_is_refused_listing_them(pallet):
    for name in ("overlay2", "btrfs"):
        (pallet.root / name / "x").mkdir(parents=True)
    result = pallet("--storage-driver", "vfs", "storage", "status")
    assert result.returncode == 1
    assert '"btrfs", "overlay2"' in result.error_lines[0]
    unchosen = pallet("storage", "status")
    assert unchosen.returncode == 1
    assert "holds data of several storage drivers (btrfs, overlay2)" in unchosen.error_lines[0]


def test_data_of_one_driver_selects_it_without_a_record(pallet):
    (pallet.root / "vfs" / "dir").mkdir(parents=True)
    data = status(pallet)
    assert data["Driver"] == "vfs"
    assert data["ChosenBy"] == "data found on disk"


def test_storage_options_merge_file_then_flags(tmp_path):
    config_file = tmp_path / "p.toml"
    config_file.write_text('[storage.options.btrfs]\nsize = "5G"\nmin_space = "1G"\n')
    cfg = Config.load(config_path=str(config_file), storage_opts=["size=10G"])
    assert cfg.storage_options("btrfs") == {"size": "10G", "min_space": "1G"}
    assert cfg.storage_options("vfs") == {"size": "10G"}


def test_bad_storage_opt_and_config_are_usage_errors(pallet, tmp_path):
    result = pallet("--storage-opt", "novalue", "storage", "status")
    assert result.returncode == 2
    assert result.error_lines == ['Error: invalid --storage-opt "novalue": expected KEY=VALUE']
    missing = pallet("--config", str(tmp_path / "absent.toml"), "info")
    assert missing.returncode == 2
    assert missing.error_lines == [f"Error: config file {tmp_path / 'absent.toml'} does not exist"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage\n")
    broken = pallet("--config", str(bad), "info")
    assert broken.returncode == 2 and "is not valid TOML" in broken.error_lines[0]


def test_root_alone_keeps_runtime_state_inside_it(pallet):
    from tests.conftest import Pallet

    only_root = Pallet(pallet.root, None)
    result = only_root("info", "--json")
    data = json.loads(result.stdout)
    assert data["RootDir"] == str(pallet.root)
    assert data["RunRoot"].startswith(str(pallet.root) + "/")


def _snapshot(paths):
    listing = set()
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            listing.update(os.path.join(dirpath, name) for name in dirnames + filenames)
    return listing


def test_root_alone_leaves_nothing_outside_it(pallet):
    from tests.conftest import Pallet

    outside = ["/var/lib/pallet", "/run/pallet", "/etc/pallet", os.path.expanduser("~/.config/pallet")]
    before = _snapshot(outside)
    only_root = Pallet(pallet.root, None)
    only_root("image", "build-busybox", check=True)
    result = only_root("run", "--rm", "--network", "none", "busybox", "echo", "inside")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inside\n"
    assert _snapshot(outside) == before
    assert (pallet.root / "run").is_dir()


def _fails_on_the_driver_before_any_pull(result, reason):
    assert result.error_lines == [f"Error: {reason}"], result.stderr
    assert "Unable to find image" not in result.stdout + result.stderr


def test_an_unavailable_driver_fails_run_and_pull_before_any_pull(pallet):
    reason = 'storage driver "devicemapper" is unavailable on this host: device-mapper is not supported by this kernel'
    run = pallet("--storage-driver", "devicemapper", "run", "--rm", "busybox", "true")
    assert run.returncode == 125
    _fails_on_the_driver_before_any_pull(run, reason)
    pull = pallet("--storage-driver", "devicemapper", "pull", "busybox")
    assert pull.returncode == 1
    _fails_on_the_driver_before_any_pull(pull, reason)
    assert not (pallet.root / "images").exists()


def test_a_broken_driver_on_a_fresh_root_fails_run_on_the_driver(pallet, broken_site):
    run = pallet("--storage-driver", "explodefs", "run", "--rm", "busybox", "true", env={"PYTHONPATH": str(broken_site)})
    assert run.returncode == 125
    errors = [line for line in run.error_lines if not line.startswith("pallet: warning:")]
    assert len(errors) == 1 and errors[0].startswith('Error: storage driver "explodefs" cannot be used: '), run.stderr
    assert "is broken" in errors[0]
    assert "Unable to find image" not in run.stdout + run.stderr


def test_a_root_whose_driver_was_uninstalled_says_to_reinstall_or_migrate_first(pallet, vendor_site, tmp_path):
    import io
    import tarfile

    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    installed = {"PYTHONPATH": str(vendor_site)}
    made = pallet("--storage-driver", "copyfs", "image", "import", str(layer), "mine:1", env=installed)
    assert made.returncode == 0, made.stderr
    assert (pallet.root / "storage-driver").read_text().strip() == "copyfs"
    gone = pallet("run", "--rm", "mine:1", "true")  # the vendor package is no longer on the path
    assert gone.returncode == 125
    assert gone.error_lines == [
        f'Error: {pallet.root} holds layers of storage driver "copyfs", which is not installed: reinstall the '
        'package that provides it (to leave a driver, run "pallet storage migrate --to DRIVER" before uninstalling it)']
