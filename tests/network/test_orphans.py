"""A root deleted with its networks still up: the next pallet on the host removes what it left."""

from __future__ import annotations

import shutil

from pallet.kernel.network import attach as net
from pallet.kernel.network.store import NetworkStore
from pallet.plugins.network.bridge import REGISTRY, collect_orphans
from pallet.plugins.network.nft import table_exists, table_name
from tests.network.conftest import NET, links


def test_tables_and_bridges_of_a_deleted_root_are_collected(engine, sandbox, container, tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    (tmp_path / "empty.toml").write_text('[network]\ndefault_address_pools = "10.232.0.0/16:24"\n')
    doomed = Engine(Config.load(root=str(tmp_path / "doomed"), config_path=str(tmp_path / "empty.toml")))
    store = NetworkStore(doomed)
    bridge = store.create("left", subnet=f"{NET}.70.0/24").driver_data["bridge"]
    default_device = store.bridge_device()
    net.connect(doomed, container(), sandbox())
    table = table_name(doomed.root)
    assert table_exists(table) and (REGISTRY / f"{table}.json").exists()
    assert default_device.startswith("pb-") and default_device in links()

    shutil.rmtree(tmp_path / "doomed")
    assert table in collect_orphans()
    assert not table_exists(table)
    assert bridge not in links() and default_device not in links()
    assert not (REGISTRY / f"{table}.json").exists()
    assert table not in collect_orphans(), "nothing is collected twice"
