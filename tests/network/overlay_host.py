"""Run pallet.kernel.network operations as one simulated host: ``python3 -m tests.network.overlay_host ROOT STORE OP …``.

The overlay test starts this under ``nsenter --net=<host namespace>`` so the driver sees that
host's underlay address, as a pallet process on a real second machine would.
"""

from __future__ import annotations

import json
import sys

from pallet.kernel.config import Config
from pallet.kernel.engine import Engine
from pallet.kernel.network.attach import connect, disconnect
from pallet.kernel.network.store import NetworkStore
from tests.network.conftest import FakeContainer


def main(root: str, store_url: str, op: str, *args: str) -> None:
    engine = Engine(Config.load(root=root, config_path=f"{root}.toml"))
    engine.cluster_store = store_url
    if op == "connect":
        network, cid, name, sandbox, *aliases = args
        result = connect(engine, FakeContainer(id=cid, name=name, network_mode=network), sandbox, aliases=aliases)
        print(json.dumps(result))
    elif op == "disconnect":
        disconnect(engine, FakeContainer(id=args[0], name=args[0][:8]))
    elif op == "teardown":
        NetworkStore(engine).teardown_all()


if __name__ == "__main__":
    main(*sys.argv[1:])
