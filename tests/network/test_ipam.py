"""default IPAM: pools avoid routed subnets, addresses are never handed out twice, even across processes."""

from __future__ import annotations

import ipaddress
import multiprocessing

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import Conflict, UsageError
from pallet.plugins.network.ipam import DefaultIpam, parse_pools
from pallet.plugins.network.netlink import host_routes


def _grab(home: str, pool: str, count: int, queue) -> None:
    ipam = DefaultIpam(DriverContext(home))
    queue.put([ipam.request_address(pool) for _ in range(count)])


def test_concurrent_requests_get_distinct_addresses(tmp_path):
    ipam = DefaultIpam(DriverContext(str(tmp_path)))
    pool, _ = ipam.request_pool("10.231.40.0/24")
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_grab, args=(str(tmp_path), pool, 10, queue)) for _ in range(6)]
    for w in workers:
        w.start()
    got = [addr for _ in workers for addr in queue.get(timeout=60)]
    for w in workers:
        w.join()
    assert len(got) == 60 and len(set(got)) == 60
    for addr in got:
        ipam.release_address(pool, addr)
    assert ipam.pools()[pool]["allocated"] == []


def test_pool_is_chosen_outside_routed_subnets(tmp_path):
    routed = [ipaddress.IPv4Network(f"{n}/{p}", strict=False) for n, p in host_routes()]
    first_routed = routed[0]
    ipam = DefaultIpam(DriverContext(str(tmp_path), {"pools": f"{first_routed.supernet(new_prefix=max(first_routed.prefixlen - 1, 0))}:"
                                                f"{first_routed.prefixlen}"}))
    _, cidr = ipam.request_pool()
    assert not any(ipaddress.IPv4Network(cidr).overlaps(r) for r in routed)


def test_pools_never_overlap_and_release(tmp_path):
    ipam = DefaultIpam(DriverContext(str(tmp_path), {"pools": "10.231.64.0/22:24"}))
    cidrs = [ipam.request_pool()[1] for _ in range(4)]
    assert cidrs == ["10.231.64.0/24", "10.231.65.0/24", "10.231.66.0/24", "10.231.67.0/24"]
    with pytest.raises(Exception, match="could not find an available"):
        ipam.request_pool()
    with pytest.raises(Conflict):
        ipam.request_pool("10.231.65.128/25")
    ipam.release_pool("10.231.65.0/24")
    assert ipam.request_pool()[1] == "10.231.65.0/24"


def test_gateway_and_fixed_addresses(tmp_path):
    ipam = DefaultIpam(DriverContext(str(tmp_path)))
    pool, _ = ipam.request_pool("10.231.41.0/24", "10.231.41.64/26")
    assert ipam.request_address(pool, "", {"RequestAddressType": "com.docker.network.gateway"}) == "10.231.41.1/24"
    assert ipam.request_address(pool) == "10.231.41.65/24"
    assert ipam.request_address(pool, "10.231.41.9") == "10.231.41.9/24"
    with pytest.raises(Conflict):
        ipam.request_address(pool, "10.231.41.9")
    with pytest.raises(UsageError):
        ipam.request_address(pool, "10.231.42.9")
    with pytest.raises(UsageError):
        parse_pools("10.0.0.1/8:16")


def _create(root: str, config: str, name: str, queue) -> None:
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    engine = Engine(Config.load(root=root, config_path=config))
    queue.put(NetworkStore(engine).create(name).ipam_config[0]["Subnet"])


def test_concurrent_network_creation_in_two_roots_gets_distinct_subnets(tmp_path):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    config = tmp_path / "pallet.toml"
    config.write_text('[network]\ndefault_address_pools = "10.231.128.0/18:24"\n')
    roots = [str(tmp_path / f"root{i}") for i in range(3)]
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_create, args=(r, str(config), "par", queue)) for r in roots]
    try:
        for w in workers:
            w.start()
        subnets = [queue.get(timeout=60) for _ in workers]
        for w in workers:
            w.join()
        assert len(set(subnets)) == 3
    finally:
        for root in roots:
            NetworkStore(Engine(Config.load(root=root, config_path=str(config)))).teardown_all()
