"""The CLI's shape: version, help, unknown commands, one-line errors."""


def test_version_prints_the_package_version(pallet):
    from kernel import __version__

    result = pallet("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pallet version {__version__}"


def test_help_lists_groups_and_everyday_verbs(pallet):
    result = pallet("--help")
    assert result.returncode == 0
    for word in ("container", "image", "network", "volume", "plugins", "storage", "system", "run", "ps", "pull", "images"):
        assert f"\n  {word} " in result.stdout


def test_unknown_command_is_a_usage_error(pallet):
    result = pallet("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
