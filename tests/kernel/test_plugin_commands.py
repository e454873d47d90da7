"""pallet_register_commands: plugins add CLI commands, loaded only when a command line names one."""

import subprocess
import sys

import click
import pytest

from pallet.kernel import hookimpl
from pallet.kernel.cli import cli
from pallet.kernel.plugins import PluginManager
from tests.conftest import REPO


class CommandPlugin:
    """An in-process plugin adding a top-level group and a subcommand of ``pallet security``."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def pallet_register_commands(self, cli):
        self.calls += 1

        @click.command("hello")
        def hello():
            click.echo("hello from a plugin")

        cli.add_command(hello)
        cli.plugin_group("security").add_command(click.Command("probe-me", callback=lambda: None))


class Clashing:
    @hookimpl
    def pallet_register_commands(self, cli):
        cli.add_command(click.Command("run", callback=lambda: None))


def test_register_commands_calls_each_plugin_once_and_adds_its_commands():
    manager = PluginManager(warn=pytest.fail)
    plugin = CommandPlugin()
    manager.pm.register(plugin, name="cmds")
    root = click.Group("root")
    root.plugin_group = lambda name: root.commands.setdefault(name, click.Group(name))
    manager.register_commands(root, "runtime")
    manager.register_commands(root, "runtime")
    assert plugin.calls == 1
    assert set(root.commands) == {"hello", "security"}
    assert "probe-me" in root.commands["security"].commands


def test_a_command_name_already_taken_is_refused_with_a_warning_naming_the_plugin():
    warnings = []
    manager = PluginManager(warn=warnings.append)
    manager.pm.register(Clashing(), name="clash")
    manager.register_commands(cli, "runtime")
    assert "run" not in cli.commands
    assert len(warnings) == 1
    assert 'plugin "clash" failed in pallet_register_commands' in warnings[0]
    assert 'the command "pallet run" already exists' in warnings[0]


def test_only_groups_that_take_plugin_commands_are_offered():
    with pytest.raises(ValueError, match="takes no plugin commands"):
        cli.plugin_group("image")


@pytest.mark.parametrize("argv,plugin_module", [
    (["security", "seccomp", "default"], "pallet.plugins.security.seccomp_cli"),
    (["security", "userns", "--help"], "pallet.plugins.security.userns_cli"),
    (["security", "check", "--help"], "pallet.plugins.security.battery"),
])
def test_security_commands_come_from_their_plugins(pallet, argv, plugin_module):
    """The kernel's ``security`` group is empty: each subcommand is imported from its plugin when named."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pallet.kernel.cli", "--root", str(pallet.root),
                           *argv], capture_output=True, text=True, cwd=REPO, env=pallet.env)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert plugin_module in imported


def test_a_disabled_plugin_takes_its_commands_along(pallet):
    result = pallet("security", "userns", "setup", env={"PALLET_DISABLE_PLUGINS": "userns"})
    assert result.returncode == 2
    assert "No such command 'userns'" in result.stderr
    assert pallet("security", "seccomp", "default", env={"PALLET_DISABLE_PLUGINS": "userns"}).returncode == 0


def test_built_in_commands_load_no_plugin_commands(pallet):
    """A built-in verb never asks plugins for commands: ``pallet version`` imports no plugin module."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pallet.kernel.cli", "--root", str(pallet.root),
                           "version"], capture_output=True, text=True, cwd=REPO, env=pallet.env)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {name for name in imported if name.startswith("pallet.plugins")}
