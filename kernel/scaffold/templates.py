'''The files ``pallet plugins new`` writes, as ``string.Template`` texts (``$name``, ``$Class`` …).

Each driver template is a small but correct implementation of every method of its base class,
so that the generated distribution passes its conformance kit before the vendor changes a line;
the docstrings say what pallet expects of each method, for the vendor who replaces the body.
'''

CLASS_SUFFIX = {"storage": "Driver", "volume": "VolumeDriver", "network": "Network"}
GROUP = {"storage": "pallet.storage", "volume": "pallet.storage", "network": "pallet.network"}

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "pallet-$name"
version = "0.1.0"
description = "The $name $kind driver for pallet"
requires-python = ">=3.11"
# pallet is the host application: not a dependency, so the package installs beside any pallet.
dependencies = []

[project.optional-dependencies]
test = ["pytest>=8"]

# pallet finds the driver through this entry point; the name is the driver's name.
[project.entry-points."$group"]
$name = "$package.driver"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

INIT = '''\
"""pallet-$name: the $name $kind driver for pallet (the driver is in ``$package.driver``)."""
'''

STORAGE = '''\
"""$name: a pallet storage driver. Each layer is a directory holding a full copy of its parent.

Start here and replace the bodies: every method of ``pallet.drivers.StorageDriver`` is written
out, with what pallet expects of it. The contract is in pallet's docs/plugins.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pallet import hookimpl
from pallet.drivers import Availability, StorageDriver
from pallet.errors import Conflict, NotFound, PalletError

PALLET_PLUGIN_API = "$api_range"  # the plugin contract this module was written against ($api)


class $Class(StorageDriver):
    description = "$name: layers as copied directories"

    @classmethod
    def probe(cls, home=None, options=None):
        """Whether the driver can work on this host: look, change nothing. Called before every open.

        ``home`` is where the driver would keep its layers (None when pallet only lists plugins).
        """
        if shutil.which("cp") is None:
            return Availability.no("cp is not installed")
        return Availability.ok()

    def __init__(self, context):
        """``context.home`` is ``<root>/$name``: create it when needed. Refuse unknown options here."""
        super().__init__(context)
        unknown = sorted(self.options)
        if unknown:
            from pallet.errors import UsageError

            raise UsageError(f'unknown option "{unknown[0]}" for storage driver "$name"')

    def _dir(self, layer_id: str) -> Path:
        return self.home / "layers" / self.check_id(layer_id)

    # --- required -------------------------------------------------------------------------
    def create(self, layer_id, parent=None):
        """Make read-only layer ``layer_id`` holding ``parent``'s files (or empty).

        Conflict if it exists, NotFound if ``parent`` does not. Crash-safe: a layer appears whole or not at all.
        """
        target = self._dir(layer_id)
        if target.exists():
            raise Conflict(f'layer "{layer_id}" already exists')
        if parent is not None and not self._dir(parent).is_dir():
            raise NotFound(f'parent layer "{parent}" does not exist')
        staging = self.home / "staging" / f"{layer_id}.{os.getpid()}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if parent is not None:
            # cp -a keeps owners, modes, hard links, devices, xattrs and file capabilities.
            proc = subprocess.run(["cp", "-a", "--", str(self._dir(parent)), str(staging)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise PalletError(f"$name: copying layer {parent} failed: {proc.stderr.strip()}")
        else:
            staging.mkdir(mode=0o755)
        os.rename(staging, target)

    def create_rw(self, layer_id, parent=None, opts=None):
        """A container's read-write layer. ``opts`` are ``--storage-opt``s: refuse those you do not support."""
        self.refuse_options(opts)
        self.create(layer_id, parent)

    def remove(self, layer_id):
        """Delete the layer (mounted or not). Removing a missing layer is not an error."""
        target = self._dir(layer_id)
        if not target.exists():
            return
        doomed = self.home / "staging" / f"rm-{layer_id}.{os.getpid()}"
        doomed.parent.mkdir(parents=True, exist_ok=True)
        os.rename(target, doomed)  # gone at once, even if the delete below is interrupted
        shutil.rmtree(doomed)

    def get(self, layer_id, mount_label=""):
        """Return the directory holding the layer's whole root filesystem (the merged view). NotFound if missing.

        Each get is balanced by one put; a driver that mounts counts them. ``mount_label`` is an SELinux context.
        """
        target = self._dir(layer_id)
        if not target.is_dir():
            raise NotFound(f'layer "{layer_id}" does not exist')
        return target

    def put(self, layer_id):
        """Release one get (nothing to unmount here)."""

    def exists(self, layer_id):
        """Whether the driver holds ``layer_id``."""
        return self._dir(layer_id).is_dir()

    # --- optional -------------------------------------------------------------------------
    def layers(self):
        """Every layer id on disk (migration and repair use it). The base class's fallback sees only this process's."""
        root = self.home / "layers"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def status(self):
        """Rows for ``pallet info``: (name, value) strings."""
        return [("Home", str(self.home)), ("Layers", str(len(self.layers())))]

    def metadata(self, layer_id):
        """Facts about a layer for ``inspect``'s GraphDriver.Data: a dict of strings."""
        return {"Dir": str(self._dir(layer_id))}

    def cleanup(self):
        """Release what this process holds (mounts, devices) when the engine shuts down."""

    # The diff operations (diff, changes, apply_diff, diff_size) come from StorageDriver: they
    # compare get() views and extract through pallet's safe tar code, whiteouts included.
    # Override them when the filesystem knows the changes itself (as overlay2 reads its upper dir);
    # an apply_diff override must refuse entries escaping the layer and apply self.id_shift.

    def diff(self, layer_id, parent):
        """Yield an uncompressed tar of the changes from ``parent`` to ``layer_id`` (OCI whiteouts)."""
        return super().diff(layer_id, parent)

    def changes(self, layer_id, parent):
        """The paths added ("A"), changed ("C") or deleted ("D"), as ``docker diff`` lists them."""
        return super().changes(layer_id, parent)

    def apply_diff(self, layer_id, parent, stream):
        """Create ``layer_id`` on ``parent`` from a layer tar; return the bytes of content applied."""
        return super().apply_diff(layer_id, parent, stream)

    def diff_size(self, layer_id, parent):
        """The bytes the layer adds to its parent (hard links once)."""
        return super().diff_size(layer_id, parent)


@hookimpl
def pallet_register_storage_drivers(register):
    register("$name", $Class)
'''

VOLUME = '''\
"""$name: a pallet volume driver. A volume is a directory, ``<volumes>/NAME/_data``.

Every method of ``pallet.drivers.VolumeDriver`` is written out with what pallet expects of it.
The layout of the shared volumes home (``<root>/volumes``): volume NAME lives in
``<home>/NAME/``; pallet keeps its record there (``volume.json``), the driver everything else.
"""

from __future__ import annotations

import shutil

from pallet import hookimpl
from pallet.drivers import Availability, VolumeDriver
from pallet.errors import UsageError

PALLET_PLUGIN_API = "$api_range"  # the plugin contract this module was written against ($api)

MARKER = "$name.volume"  # tells this driver's volumes from other drivers' in the shared home


class $Class(VolumeDriver):
    description = "$name: volumes as directories"

    @classmethod
    def probe(cls, home=None, options=None):
        """Whether the driver can work on this host: look, change nothing."""
        return Availability.ok()

    def path(self, name):
        """Where the volume's data is, mounted or not (``volume inspect``'s Mountpoint)."""
        return self.home / name / "_data"

    def create(self, name, options):
        """Make volume ``name`` with the ``-o`` options; UsageError for an option you do not know.

        Creating an existing volume again is not an error and keeps its data.
        """
        unknown = sorted(options)
        if unknown:
            raise UsageError(f'unknown option "{unknown[0]}" for volume driver "$name"')
        self.path(name).mkdir(parents=True, exist_ok=True)
        (self.home / name / MARKER).touch()

    def mount(self, name, container_id):
        """The first container mounts the volume: make the data reachable and return its host path."""
        return self.path(name)

    def unmount(self, name, container_id):
        """The last container left. The data stays; unmounting twice is not an error."""

    def remove(self, name):
        """Delete the data (pallet checked no container uses it); a missing volume is not an error."""
        shutil.rmtree(self.path(name), ignore_errors=True)
        (self.home / name / MARKER).unlink(missing_ok=True)

    def list(self):
        """The names of this driver's volumes, not those of other drivers sharing the home."""
        return sorted(p.parent.name for p in self.home.glob(f"*/{MARKER}"))


@hookimpl
def pallet_register_volume_drivers(register):
    register("$name", $Class)
'''

NETWORK = '''\
"""$name: a pallet network driver. Each container gets a point-to-point veth; the host end stays unaddressed.

Every method of ``pallet.drivers.NetworkDriver`` is written out with what pallet expects of it;
replace the bodies (with a bridge, a VLAN, a tunnel) and keep the duties. pallet holds its
network lock around each call and gives addresses from the network's IPAM driver.
"""

from __future__ import annotations

import ipaddress

from pallet import hookimpl
from pallet.drivers import Availability, EndpointInfo, JoinInfo, NetworkDriver

PALLET_PLUGIN_API = "$api_range"  # the plugin contract this module was written against ($api)


def _alias(network_id: str) -> str:
    return f"pallet-$name:{network_id}"


def _delete_link(ipr, index: int) -> None:
    """Delete a link; one already gone is fine (a veth goes with its peer's namespace, asynchronously)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != 19:  # ENODEV
            raise


class $Class(NetworkDriver):
    description = "$name: point-to-point veth pairs"
    scope = "local"        # "global" for a multi-host driver sharing state in the cluster store
    needs_sandbox = True   # False if containers share the host's network namespace

    @classmethod
    def probe(cls, home=None, options=None):
        """Whether the driver can work on this host: look, change nothing."""
        try:
            import pyroute2  # noqa: F401
        except ImportError:
            return Availability.no("pyroute2 is not installed")
        return Availability.ok()

    @staticmethod
    def _host_end(endpoint_id):
        return f"$prefix{endpoint_id[:12]}"  # at most 15 characters, as interface names are

    def create_network(self, network_id, options, ipv4):
        """Build the network; return what to store with it (JSON). ``ipv4``: ``[{"pool", "gateway"}]``."""
        return {"pool": ipv4[0]["pool"] if ipv4 else ""}

    def delete_network(self, network_id, data):
        """Remove all create_network and its endpoints made, even after a crash. Missing pieces are fine."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for link in ipr.get_links():
                if link.get_attr("IFLA_IFALIAS") == _alias(network_id):
                    _delete_link(ipr, link["index"])

    def create_endpoint(self, network_id, endpoint_id, data, info, options):
        """Prepare the container's interface for ``info.address``; return the final EndpointInfo."""
        from pyroute2 import IPRoute

        host = self._host_end(endpoint_id)
        with IPRoute() as ipr:
            ipr.link("add", ifname=host, kind="veth", peer=f"{host}p")
            index = ipr.link_lookup(ifname=host)[0]
            ipr.link("set", index=index, ifalias=_alias(network_id), state="up")
            peer = ipr.link_lookup(ifname=f"{host}p")[0]
            if info.mac_address:
                ipr.link("set", index=peer, address=info.mac_address)
            mac = ipr.get_links(peer)[0].get_attr("IFLA_ADDRESS")
        return EndpointInfo(address=info.address, gateway=info.gateway, mac_address=mac)

    def delete_endpoint(self, network_id, endpoint_id, data):
        """Remove the endpoint's links; a second call is not an error."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self._host_end(endpoint_id)):
                _delete_link(ipr, index)

    def join(self, network_id, endpoint_id, data, sandbox_key, options):
        """Move the interface into the sandbox (a netns path), name it ``options["interface"]``, configure it."""
        from pyroute2 import IPRoute, NetNS

        peer = f"{self._host_end(endpoint_id)}p"
        interface = options.get("interface", "eth0")
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=sandbox_key)
        with NetNS(sandbox_key) as ns:
            index = ns.link_lookup(ifname=peer)[0]
            ns.link("set", index=index, ifname=interface)
            address = ipaddress.ip_interface(options["address"])
            ns.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            ns.link("set", index=index, state="up")
            gateway = options.get("gateway", "")
            if gateway:
                ns.route("add", dst="0.0.0.0/0", gateway=gateway)
        return JoinInfo(interface=interface, gateway=gateway)

    def leave(self, network_id, endpoint_id, data, sandbox_key):
        """Undo join. Deleting the host end removes the pair, wherever the other end is."""
        self.delete_endpoint(network_id, endpoint_id, data)

    def release_cluster(self, network_id, options):
        """For ``global`` drivers: the last host left the network; free what the cluster store holds for it."""


@hookimpl
def pallet_register_network_drivers(register):
    register("$name", $Class)
'''

DRIVER = {"storage": STORAGE, "volume": VOLUME, "network": NETWORK}

TEST = {
    kind: f'''\
"""pallet's {kind} conformance kit against the $name driver, as it is installed (its entry point)."""

import pytest

from pallet.kernel.conformance.{kind} import *  # noqa: F401,F403 - the kit's tests and fixtures


@pytest.fixture
def {kind}_driver_name():  # noqa: F811 - names the driver the kit tests
    return "$name"
''' for kind in ("storage", "volume", "network")}

README = {
    kind: f'''\
# pallet-$name

The `$name` {kind} driver for pallet, generated by
`pallet plugins new {kind} $name`. The driver is `src/$package/driver.py`: every method of
pallet's base class is there with what pallet expects of it; replace the bodies.

```sh
pip install .                          # pallet finds it through the entry point in pyproject.toml
pallet plugins ls --kind {kind}        # lists $name as third-party
pallet plugins check {kind} $name      # pallet's {kind} conformance kit (-k, -v, --junitxml)
python -m pytest                       # the same kit, from this distribution's tests/
```

{{usage}}
The contract (hooks, errors, duties, the plugin API version) is pallet's `docs/plugins.md`.
''' for kind in ("storage", "volume", "network")}

USAGE = {
    "storage": "Use it: `pallet --storage-driver $name run busybox true` (a new root, or after\n"
               "`pallet storage migrate --to $name`).\n",
    "volume": "Use it: `pallet volume create -d $name data` and `pallet run -v data:/data …`.\n",
    "network": "Use it: `pallet network create -d $name net1` and `pallet run --network net1 …`.\n",
}
README = {kind: text.replace("{usage}", USAGE[kind]) for kind, text in README.items()}
