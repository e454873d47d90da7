"""Commands that plugins add through ``pallet_register_commands``, registered only when a command line needs them."""

from __future__ import annotations

import click

# Built-in groups whose subcommands plugins provide -> the entry-point group loaded to fill them.
PLUGIN_GROUPS = {"security": "security"}


def make_engine(params: dict):
    """The engine for the root command's parsed global options."""
    from pallet.kernel import codecache

    codecache.install()
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    # --debug is read by main() from argv, so that it also covers errors raised before this runs.
    return Engine(Config.load(params.get("root"), params.get("run_root"), params.get("config_path"),
                              params.get("storage_driver"), params.get("storage_opt") or ()),
                  params.get("cluster_store"))


def register_plugin_commands(ctx: click.Context, *groups: str) -> None:
    """Let the plugins of ``groups`` (default: all) add their commands to the root command.

    A command name is looked up before the root command's callback runs, so the engine may
    have to be made here from the parsed global options; the callback then keeps it.
    """
    root = ctx.find_root()
    if root.obj is None:
        root.obj = make_engine(root.params)
    root.obj.plugins.register_commands(root.command, *groups)


class PluginGroup(click.Group):
    """A built-in group (``pallet security``) whose subcommands plugins of ``entry_group`` register."""

    def __init__(self, *args, entry_group: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.entry_group = entry_group

    def get_command(self, ctx, name):
        if name not in self.commands:
            register_plugin_commands(ctx, self.entry_group)
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        register_plugin_commands(ctx, self.entry_group)
        return super().list_commands(ctx)
