"""An unknown storage driver name is a usage error (exit 2) on every command, checked without importing plugins."""

import pytest

AVAILABLE = "(available: btrfs, devicemapper, overlay2, vfs, zfs)"
COMMANDS = [["images"], ["ps", "-a"], ["info"], ["volume", "ls"], ["network", "ls"], ["version"], ["plugins", "ls"],
            ["storage", "status"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unknown_storage_driver_flag_is_exit_2_on_every_command(pallet, command):
    result = pallet("--storage-driver", "nope", *command)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.error_lines == [f'Error: unknown storage driver "nope" {AVAILABLE}']


def test_environment_and_config_file_are_checked_too(pallet):
    result = pallet("images", env={"PALLET_STORAGE_DRIVER": "nope"})
    assert result.returncode == 2 and result.error_lines == [f'Error: unknown storage driver "nope" {AVAILABLE}']
    config = pallet.root.parent / "pallet.toml"
    config.write_text('[storage]\ndriver = "nope2"\n')
    result = pallet("--config", str(config), "ps")
    assert result.returncode == 2 and result.error_lines == [f'Error: unknown storage driver "nope2" {AVAILABLE}']


def test_a_volume_driver_is_not_a_storage_driver(pallet):
    # "local" is an entry point of the pallet.storage group, but it registers a volume driver.
    for _ in range(2):  # before and after the entry-point cache learnt what each plugin registers
        result = pallet("--storage-driver", "local", "images")
        assert result.returncode == 2
        assert result.error_lines == [f'Error: unknown storage driver "local" {AVAILABLE}']


def test_a_known_name_is_checked_from_the_cache_without_importing_plugins(pallet, broken_site):
    env = {"PYTHONPATH": str(broken_site)}
    first = pallet("--storage-driver", "vfs", "images", env=env)
    assert first.returncode == 0, first.stderr
    assert "explodefs" in first.stderr  # the first check loaded the storage plugins, the broken one warned
    again = pallet("--storage-driver", "vfs", "images", env=env)
    assert again.returncode == 0 and again.stderr == ""  # answered by the cache: nothing imported, no warning
    assert again.stdout == first.stdout
