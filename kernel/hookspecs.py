"""The plugin contract: every hook a pallet plugin may implement, on one page.

A plugin is a module (or object) named by an entry point in one of the groups
``pallet.storage``, ``pallet.network``, ``pallet.security``, ``pallet.registry`` or
``pallet.runtime``.
Stevedore lists the entry points (pallet caches the listing under the run root); pallet
imports those of the groups a command needs, registers each with one pluggy
``PluginManager("pallet")`` and validates every ``pallet_*`` function against the specs
below. A module that fails to import, a function whose name starts with ``pallet_`` but
matches no spec, or whose arguments are not a subset of the spec's, marks the plugin
*broken* (shown by ``pallet plugins ls`` with the reason) and the engine goes on without it.
So does a module attribute ``PALLET_PLUGIN_API`` (a range such as ``">=1.0,<2"``) that this
pallet's :data:`pallet.kernel.PLUGIN_API` does not satisfy.

Three kinds of hooks:

* **Registration hooks** (``pallet_register_*``) are called once, for each plugin, when
  pallet loads its group. Each receives ``register(name, cls)``; call it once per driver the
  plugin provides. ``cls`` subclasses the matching base in :mod:`pallet.kernel.drivers`, whose
  docstrings say what each method must do. Pallet then uses drivers as objects, each made
  as ``cls(context)`` with a :class:`pallet.kernel.drivers.DriverContext` once its ``probe``
  said available: exactly one storage driver per root, a network driver per network, every
  enabled security profile in ``order``, the transport named by a reference's prefix.
* **Broadcast hooks** (``pallet_container_*``, ``pallet_image_*``, ``pallet_spec_amend``)
  are called through pluggy on every plugin that implements them, in pluggy's order: last
  registered first, ``tryfirst``/``trylast`` honoured, wrappers (``wrapper=True``) around
  the call. Their return values are ignored unless the spec says otherwise. An exception
  raised by an implementation is reported as one warning naming the plugin, and the other
  implementations and the operation go on.
* **The command hook** (``pallet_register_commands``: it receives the command line, not
  ``register``) adds subcommands to ``pallet``; it is called only when a command line names
  a command pallet does not have itself.

Write implementations with ``pallet.hookimpl``::

    from pallet import hookimpl

    @hookimpl
    def pallet_register_storage_drivers(register):
        register("mydriver", MyDriver)

Keep the module cheap to import: import heavy libraries inside driver methods.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("pallet")


# --- registration hooks -------------------------------------------------------------------

@hookspec
def pallet_register_storage_drivers(register):
    """Register storage (graph) drivers.

    Called once when pallet needs storage (``run``, ``pull``, ``images`` …).
    ``register(name, cls)`` takes the driver's name as users type it with
    ``--storage-driver`` and a subclass of :class:`pallet.kernel.drivers.StorageDriver`.
    A driver that implements only the six required methods (create, create_rw, remove,
    get, put, exists) gets ``layers`` and the diff operations (diff, changes, apply_diff,
    diff_size) from the base class's fallbacks; the storage conformance kit passes on that.
    Return nothing.
    """


@hookspec
def pallet_register_network_drivers(register):
    """Register network drivers.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.NetworkDriver`,
    selected by ``--network``/``pallet network create -d NAME``. Return nothing.
    """


@hookspec
def pallet_register_ipam_drivers(register):
    """Register IP address managers.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.IpamDriver`,
    selected by ``pallet network create --ipam-driver NAME`` (default ``default``).
    Return nothing.
    """


@hookspec
def pallet_register_volume_drivers(register):
    """Register volume drivers.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.VolumeDriver`,
    selected by ``pallet volume create -d NAME`` (default ``local``). Return nothing.
    """


@hookspec
def pallet_register_security_profiles(register):
    """Register security profiles.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.SecurityProfile`.
    Every available profile contributes to each container's OCI spec, in the order of
    their ``order`` attribute; ``--security-opt NAME=VALUE`` options are routed to the
    profile called NAME. Return nothing.
    """


@hookspec
def pallet_register_transports(register):
    """Register image transports (registries and archive formats).

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.Transport`; the
    name is the reference prefix users type (``docker`` for ``docker://…``, ``oci`` for
    ``oci:PATH``). Return nothing.
    """


@hookspec
def pallet_register_runtimes(register):
    """Register OCI runtimes that execute a container bundle.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.Runtime`, selected
    by ``--runtime NAME`` (default ``pallet``, the built-in one; ``runc`` and ``crun`` run
    the same ``config.json``). Return nothing.
    """


@hookspec
def pallet_register_log_drivers(register):
    """Register log drivers: where a container's stdout and stderr lines go.

    ``register(name, cls)`` with a subclass of :class:`pallet.kernel.drivers.LogDriver`, selected
    by ``--log-driver NAME`` (default ``json-file``, or ``[logging] driver`` in pallet.toml) and
    configured with ``--log-opt``. The container's monitor opens it at each start and calls
    ``log`` per line; ``pallet logs`` reads a bounded local copy. Return nothing.
    """


# --- broadcast hooks ----------------------------------------------------------------------

@hookspec
def pallet_spec_amend(spec, container):
    """Amend a container's OCI runtime-spec ``config.json`` before it is written.

    Called after the container's networks are connected (the spec names its network
    namespace) and every security profile has applied, for every plugin that implements
    it. ``spec`` is the runtime-spec dict (change it in place); ``container`` is the
    :class:`pallet.kernel.containers.ContainerRecord` being created. Return nothing.
    """


@hookspec
def pallet_container_created(container):
    """Observe: a container record and its bundle were written. Return nothing."""


@hookspec
def pallet_container_started(container):
    """Observe: a container's process was started (``container.pid`` is set). Return nothing."""


@hookspec
def pallet_container_stopped(container, exit_code):
    """Observe: a container's process exited with ``exit_code`` (128+N for signal N). Return nothing."""


@hookspec
def pallet_container_removed(container):
    """Observe: a container and its read-write layer were removed. Return nothing."""


@hookspec
def pallet_image_pulled(reference, image_id):
    """Observe: ``reference`` (a string) was pulled or loaded and is stored as ``image_id``. Return nothing."""


@hookspec
def pallet_image_removed(image_id):
    """Observe: the image ``image_id`` and its unreferenced layers were removed. Return nothing."""


@hookspec
def pallet_authorize_request(request):
    """Allow or deny one Engine API request of ``pallet serve`` (Docker's AuthZ plugin model).

    Called before every request is handled, for every plugin that implements it. ``request``
    is a :class:`pallet.kernel.api.app.AuthorizationRequest` with ``method``, ``path`` (without
    the ``/vX.Y`` prefix), ``query`` (a dict) and ``body`` (the parsed JSON body, or None).
    Return a reason (a string) to deny it: the client gets a 403 with that reason, the first
    one given wins. Return None to let it through.
    """


# --- command hooks ------------------------------------------------------------------------

@hookspec
def pallet_register_commands(cli):
    """Add subcommands to the ``pallet`` command line.

    Called at most once per plugin and process, and only when a command line needs it:
    ``pallet NAME …`` where NAME is not a built-in command (every plugin group is loaded
    then), or a subcommand of a group that plugins fill (``pallet security …`` loads the
    ``pallet.security`` plugins). So ``pallet --help`` and ``--version`` import no plugin,
    and the top-level help lists only built-in commands.

    ``cli`` is the root ``click.Group``. Add a top-level command or group with
    ``cli.add_command(cmd)``; add under a built-in group that plugins fill with
    ``cli.plugin_group("security").add_command(cmd)``. A command receives the engine with
    ``@click.pass_obj`` and reports a user's mistake by raising ``pallet.errors.UsageError``
    (or another ``PalletError``). A name that is already taken is refused with a warning
    naming the plugin; an exception raised here is reported the same way and the other
    plugins' commands stay. Import the command's heavy dependencies inside the command, not
    here. Return nothing.
    """
