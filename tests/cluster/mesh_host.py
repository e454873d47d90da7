"""Run the mesh as one simulated node: ``python3 -m tests.cluster.mesh_host ROOT STORE OP [JSON]``.

Started under ``nsenter --net=<host namespace>`` (as the agent would run on that machine), so
the routing mesh's host rules and link land in that host's namespace. ``sync`` reads the
services and tasks from etcd, as the agent passes them after a change.
"""

from __future__ import annotations

import json
import sys

from pallet.kernel.cluster import PREFIX, mesh
from pallet.kernel.config import Config
from pallet.kernel.engine import Engine
from pallet.kernel.network.etcd import Etcd


def main(root: str, store_url: str, op: str, *args: str) -> None:
    engine = Engine(Config.load(root=root, config_path=f"{root}.toml"))
    engine.cluster_store = store_url
    etcd = Etcd(store_url)
    if op == "allocate":
        print(json.dumps(mesh.allocate_vips(engine, etcd, json.loads(args[0]))))
    elif op == "release":
        mesh.release_vips(engine, etcd, json.loads(args[0]))
    elif op == "sync":
        services = list(etcd.range(f"{PREFIX}services/")[0].values())
        tasks = list(etcd.range(f"{PREFIX}tasks/")[0].values())
        mesh.sync(engine, etcd, services, tasks)
    elif op == "teardown":
        mesh.teardown(engine)


if __name__ == "__main__":
    main(*sys.argv[1:])
