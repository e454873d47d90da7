"""The CLI's shape: version, help, unknown commands, one-line errors."""


def test_version_prints_the_package_version(pallet):
    from pallet.kernel import __version__

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


def test_help_and_version_load_no_plugins(pallet):
    """Start-up stays cheap: neither stevedore nor any plugin module is imported for --help/--version."""
    import subprocess
    import sys

    for flag in ("--help", "--version"):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pallet.kernel.cli", flag],
                              capture_output=True, text=True)
        assert proc.returncode == 0
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
        assert not {name for name in imported if name.startswith(("stevedore", "plugins", "pluggy"))}


def test_shell_completion_offers_commands(pallet):
    result = pallet(env={"_PALLET_COMPLETE": "bash_complete", "COMP_WORDS": "pallet plu", "COMP_CWORD": "1"})
    assert result.returncode == 0
    assert "plain,plugins" in result.stdout.splitlines()


def test_wrongly_typed_config_value_is_a_one_line_error(pallet, tmp_path):
    config = tmp_path / "cfg.toml"
    config.write_text("[storage]\ndriver = 5\n")
    result = pallet("--config", str(config), "storage", "status")
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1


def test_blank_config_file_is_an_empty_table_and_broken_toml_still_an_error(pallet, tmp_path):
    """A blank file skips the TOML parser (kernel/config.py); anything else is still parsed and checked."""
    config = tmp_path / "cfg.toml"
    for text in ("", "\n  \n"):
        config.write_text(text)
        result = pallet("--config", str(config), "ps", "-a")
        assert result.returncode == 0, result.stderr
    config.write_text("[storage\n")
    result = pallet("--config", str(config), "ps", "-a")
    assert result.returncode == 2
    assert "is not valid TOML" in result.stderr
