"""``pallet completion bash|zsh|fish`` and the dynamic completion of container, image, network and volume names.

The scripts are click's; they call ``pallet`` back with ``_PALLET_COMPLETE`` set. Only then are
completers attached to the commands' arguments (:func:`attach`), so a normal run pays nothing.
Names come from the state directories, with no plugin loaded.
"""

from __future__ import annotations

import click

# argument name -> the kind of name it takes, whatever the command
BY_ARGUMENT = {"containers": "container", "container": "container", "image": "image", "images": "image",
               "network_name": "network"}
# a ``name``/``names`` argument takes the kind its command group manages
BY_MODULE = {"network": "network", "volume": "volume", "image": "image", "container": "container",
             "container_ops": "container", "container_list": "container", "container_update": "container"}


def attach(command: click.Command) -> None:
    """Give the arguments of ``command`` (and its subcommands) a completer for the names they take."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            attach(sub)
    module = (getattr(command.callback, "__module__", "") or "").rsplit(".", 1)[-1]
    for param in command.params:
        if not isinstance(param, click.Argument):
            continue
        kind = BY_ARGUMENT.get(param.name) or (BY_MODULE.get(module) if param.name in ("name", "names") else None)
        if kind is not None and param._custom_shell_complete is None:
            param._custom_shell_complete = _completer(kind)


def _completer(kind: str):
    def complete(ctx, _param, incomplete: str):
        from click.shell_completion import CompletionItem

        try:
            names = NAMES[kind](_engine(ctx))
        except Exception:  # noqa: BLE001 - a broken state dir must not break the user's shell
            return []
        return [CompletionItem(n) for n in sorted(set(names)) if n.startswith(incomplete)]

    return complete


def _engine(ctx):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    params = ctx.find_root().params
    return Engine(Config.load(params.get("root"), params.get("run_root"), params.get("config_path"),
                              params.get("storage_driver"), params.get("storage_opt") or ()))


def _containers(engine) -> list[str]:
    from pallet.kernel.containers import ContainerStore

    return [n for r in ContainerStore(engine).all() for n in (r.name, r.short_id)]


def _images(engine) -> list[str]:
    from pallet.kernel.images import ImageStore

    return [n for r in ImageStore(engine).all() for n in list(r.repo_tags) or [r.short_id]]


def _networks(engine) -> list[str]:
    from pallet.kernel.network import NetworkStore

    return [r.name for r in NetworkStore(engine).all()]


def _volumes(engine) -> list[str]:
    from pallet.kernel.volumes import VolumeStore

    return [r.name for r in VolumeStore(engine).all()]


NAMES = {"container": _containers, "image": _images, "network": _networks, "volume": _volumes}


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx, shell):
    """Print the completion script for SHELL (e.g. ``source <(pallet completion bash)``)."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    variable = f"_{root.info_name}_COMPLETE".replace("-", "_").upper()  # the name click's main() reads
    click.echo(get_completion_class(shell)(root.command, {}, root.info_name, variable).source())
