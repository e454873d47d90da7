"""The ``pallet`` command: global options, lazily imported command groups, one-line errors.

Commands are listed in ``COMMANDS`` with their help text, so ``pallet --help`` imports no
command module and scans no entry point. A name not listed there is looked up among the
commands plugins add through ``pallet_register_commands`` (``kernel/cli/extend.py``).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

# A command allocates ~100,000 objects while it imports (classes, dataclasses, click's options), and
# CPython's default threshold (700) runs ~40 young collections over them that find almost nothing:
# ~5 ms of a cold ``run``. Collect every 20,000 allocations instead (garbage cycles are still freed,
# in every process that imports the CLI; a resident engine freezes its heap before forking anyway).
gc.set_threshold(20_000, 20, 20)

import click  # noqa: E402  (after the threshold: click's import is the largest)

from pallet.kernel import __version__, codecache

# name -> (module, attribute, short help). Top-level shortcuts point at the same objects as
# the group subcommands, as Docker's do.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "container": ("pallet.kernel.cli.container", "container", "Manage containers"),
    "image": ("pallet.kernel.cli.image", "image", "Manage images"),
    "network": ("pallet.kernel.cli.network", "network", "Manage networks"),
    "volume": ("pallet.kernel.cli.volume", "volume", "Manage volumes"),
    "pod": ("pallet.kernel.cli.pod", "pod", "Manage pods (containers sharing namespaces)"),
    "kube": ("pallet.kernel.cli.kube", "kube", "Play, take down and generate Kubernetes YAML"),
    "secret": ("pallet.kernel.cli.secret", "secret", "Manage secrets"),
    "config": ("pallet.kernel.cli.config", "config", "Manage cluster configs"),
    "node": ("pallet.kernel.cli.node", "node", "Manage cluster nodes"),
    "service": ("pallet.kernel.cli.service", "service", "Manage cluster services"),
    "stack": ("pallet.kernel.cli.stack", "stack", "Manage stacks (compose files deployed as cluster services)"),
    "agent": ("pallet.kernel.cli.node", "agent", "Run this node's cluster agent in the foreground"),
    "plugins": ("pallet.kernel.cli.plugins", "plugins", "List and check plugins"),
    "storage": ("pallet.kernel.cli.storage", "storage", "Inspect and migrate storage drivers"),
    "security": ("pallet.kernel.cli.security", "security", "Security profiles and checks"),
    "system": ("pallet.kernel.cli.system", "system", "Manage pallet (info, df, prune, boot)"),
    "healthcheck": ("pallet.kernel.cli.services", "healthcheck", "Run a container's health check"),
    "info": ("pallet.kernel.cli.system", "info", "Display system-wide information"),
    "version": ("pallet.kernel.cli.system", "version", "Show the pallet version"),
    "events": ("pallet.kernel.cli.events", "events_", "Get real-time events from the engine"),
    "run": ("pallet.kernel.cli.container", "run", "Create and run a new container from an image"),
    "create": ("pallet.kernel.cli.container", "create", "Create a new container"),
    "start": ("pallet.kernel.cli.container", "start", "Start one or more stopped containers"),
    "attach": ("pallet.kernel.cli.container", "attach_", "Attach to a running container's streams"),
    "stop": ("pallet.kernel.cli.container", "stop", "Stop one or more running containers"),
    "restart": ("pallet.kernel.cli.container", "restart", "Restart one or more containers"),
    "kill": ("pallet.kernel.cli.container", "kill", "Kill one or more running containers"),
    "pause": ("pallet.kernel.cli.container", "pause", "Pause all processes within containers"),
    "unpause": ("pallet.kernel.cli.container", "unpause", "Unpause all processes within containers"),
    "rm": ("pallet.kernel.cli.container", "rm", "Remove one or more containers"),
    "ps": ("pallet.kernel.cli.container", "ls", "List containers"),
    "logs": ("pallet.kernel.cli.container", "logs", "Fetch the logs of a container"),
    "exec": ("pallet.kernel.cli.container", "exec_", "Execute a command in a running container"),
    "wait": ("pallet.kernel.cli.container", "wait", "Block until containers stop, then print their exit codes"),
    "inspect": ("pallet.kernel.cli.container", "inspect_any", "Return low-level information on objects"),
    "top": ("pallet.kernel.cli.container", "top", "Display the running processes of a container"),
    "stats": ("pallet.kernel.cli.container", "stats", "Display resource usage statistics"),
    "cp": ("pallet.kernel.cli.container", "cp", "Copy files between a container and the host"),
    "diff": ("pallet.kernel.cli.container", "diff", "Inspect changes to a container's filesystem"),
    "export": ("pallet.kernel.cli.container", "export", "Export a container's filesystem as a tar archive"),
    "commit": ("pallet.kernel.cli.container", "commit", "Create a new image from a container's changes"),
    "port": ("pallet.kernel.cli.container", "port", "List port mappings of a container"),
    "rename": ("pallet.kernel.cli.container", "rename", "Rename a container"),
    "update": ("pallet.kernel.cli.container", "update", "Update configuration of one or more containers"),
    "build": ("pallet.kernel.cli.build", "build", "Build an image from a Dockerfile"),
    "builder": ("pallet.kernel.cli.build", "builder", "Manage the build cache"),
    "pull": ("pallet.kernel.cli.image", "pull", "Download an image from a registry"),
    "push": ("pallet.kernel.cli.image", "push", "Upload an image to a registry"),
    "images": ("pallet.kernel.cli.image", "ls", "List images"),
    "rmi": ("pallet.kernel.cli.image", "rm", "Remove one or more images"),
    "tag": ("pallet.kernel.cli.image", "tag", "Create a tag that refers to an image"),
    "save": ("pallet.kernel.cli.image", "save", "Save images to a tar archive"),
    "load": ("pallet.kernel.cli.image", "load", "Load images from a tar archive"),
    "import": ("pallet.kernel.cli.image", "import_", "Import a root filesystem tarball as an image"),
    "history": ("pallet.kernel.cli.image", "history", "Show the history of an image"),
    "login": ("pallet.kernel.cli.image", "login", "Log in to a registry"),
    "logout": ("pallet.kernel.cli.image", "logout", "Log out from a registry"),
    "engine": ("pallet.kernel.cli.resident", "engine", "Start, stop and show the resident engine (fast start-up)"),
    "serve": ("pallet.kernel.cli.serve", "serve", "Serve the Docker Engine API on a socket"),
    "completion": ("pallet.kernel.cli.completion", "completion", "Print a shell completion script (bash, zsh, fish)"),
}
COMPLETE_VAR = "_PALLET_COMPLETE"


class LazyGroup(click.Group):
    """A group whose subcommands live in ``COMMANDS``-style tables and are imported when invoked."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module_name, attr, _help = self.lazy[name]
            codecache.install()   # before the command's modules define their dataclasses
            command = getattr(importlib.import_module(module_name), attr)
            if COMPLETE_VAR in os.environ:  # only a shell asking for completions pays for the completers
                from pallet.kernel.cli.completion import attach

                attach(command)
            return command
        if name not in self.commands and ctx is not None:
            from pallet.kernel.cli.extend import register_plugin_commands

            codecache.install()

            register_plugin_commands(ctx)  # a plugin's command: every plugin group is loaded
        return super().get_command(ctx, name)

    def add_command(self, cmd, name=None):
        """Add a plugin's command; a name pallet or another plugin already uses is refused."""
        name = name or cmd.name
        if name in self.lazy or name in self.commands:
            raise ValueError(f'the command "pallet {name}" already exists')
        super().add_command(cmd, name)

    def plugin_group(self, name: str) -> click.Group:
        """The built-in group ``name`` that plugins add subcommands to (see ``pallet_register_commands``)."""
        from pallet.kernel.cli.extend import PLUGIN_GROUPS

        if name not in PLUGIN_GROUPS:
            raise ValueError(f'"pallet {name}" takes no plugin commands (those that do: {", ".join(PLUGIN_GROUPS)})')
        return self.get_command(None, name)

    def format_commands(self, ctx, formatter):
        groups = [n for n in self.list_commands(ctx) if n in GROUP_NAMES]
        verbs = [n for n in self.list_commands(ctx) if n not in GROUP_NAMES]
        for title, names in (("Management Commands", groups), ("Commands", verbs)):
            rows = [(n, self.lazy[n][2] if n in self.lazy else
                     self.commands[n].get_short_help_str() if n in self.commands else "") for n in names]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


GROUP_NAMES = {"builder", "config", "container", "engine", "image", "network", "node", "secret", "service", "stack", "volume",
               "pod", "kube", "plugins", "storage", "security", "system"}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, "-v", "--version", prog_name="pallet", message="%(prog)s version %(version)s")
@click.option("--root", envvar="PALLET_ROOT", metavar="DIR", help="State directory [default: /var/lib/pallet].")
@click.option("--run-root", envvar="PALLET_RUN_ROOT", metavar="DIR", help="Runtime state directory [default: /run/pallet].")
@click.option("--storage-driver", "-s", envvar="PALLET_STORAGE_DRIVER", metavar="NAME",
              help="Storage driver to use (overlay2, btrfs, zfs, devicemapper, vfs, or a plugin's).")
@click.option("--storage-opt", multiple=True, metavar="KEY=VALUE", help="Storage driver option (repeatable).")
@click.option("--config", "config_path", metavar="FILE", help="Config file [default: /etc/pallet/pallet.toml; env PALLET_CONFIG].")
@click.option("--cluster-store", envvar="PALLET_CLUSTER_STORE", metavar="URL",
              help="Cluster store for multi-host networks (etcd://HOST:2379) [config: network.cluster_store].")
@click.option("--debug", "-D", is_flag=True, envvar="PALLET_DEBUG", help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx, root, run_root, storage_driver, storage_opt, config_path, cluster_store, debug):
    """A container engine whose storage, network, security and registry drivers are plugins."""
    if ctx.obj is None:  # looking up a plugin's command may have made it already
        from pallet.kernel.cli.extend import make_engine

        ctx.obj = make_engine(ctx.params)
    if not ctx.resilient_parsing:  # shell completion must not fail on a half-typed name
        ctx.obj.check_storage_choice()
        ctx.obj.sweep_killed_builds()


def main(argv=None) -> None:
    """Console entry point: run the CLI and turn every user-facing failure into one line and an exit code."""
    from pallet.kernel.errors import PalletError

    debug = os.environ.get("PALLET_DEBUG") or "--debug" in (argv or sys.argv) or "-D" in (argv or sys.argv)
    try:
        code = cli.main(args=argv, prog_name="pallet", standalone_mode=False)
    except PalletError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.NoSuchOption as exc:  # Docker's wording; run-like commands exit 125 (container_flags)
        path = exc.ctx.command_path if exc.ctx is not None else "pallet"
        click.echo(f"Error: unknown flag: {exc.option_name}\nSee '{path} --help'.", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(141)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
