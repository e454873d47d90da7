"""The IPAM conformance kit: pools and addresses handed out once, released, refused with the documented errors.

Collected when ``--pallet-ipam-driver NAME`` is given (``pallet plugins check ipam NAME``); a
test module may ``from pallet.kernel.conformance.ipam import *`` and override the
``ipam_driver_name`` fixture. ``--pallet-ipam-opt K=V`` are the driver's options (e.g.
``pools=10.99.0.0/16:24``). The subnets it asks for are in 10.250.0.0/16.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

from pallet.kernel.conformance import harness

GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture
def ipam_driver_name(request) -> str:
    return harness.driver_name(request, "ipam")


@pytest.fixture
def ipam_home(request):
    with harness.home(request, "ipam") as home:
        yield home


@pytest.fixture
def ipam(request, ipam_driver_name, ipam_home):
    """A fresh IPAM driver on its own home (``<root>/network/ipam-NAME``), as the engine opens it."""
    root = os.path.join(ipam_home, "root")
    home = os.path.join(root, "network", f"ipam-{ipam_driver_name.replace(':', '_')}")
    return harness.open_for_kit("ipam", ipam_driver_name, home, harness.options(request, "ipam"),
                                root=root, run_root=os.path.join(ipam_home, "run"))


def subnet(index: int = 0) -> str:
    """A /24 of 10.250.0.0/16, different for each test process so that parallel runs do not meet."""
    return f"10.250.{(os.getpid() + index) % 250}.0/24"


def test_request_a_given_pool(ipam):
    pool_id, cidr = ipam.request_pool(subnet())
    assert isinstance(pool_id, str) and pool_id, f"request_pool() must return a non-empty pool id, got {pool_id!r}"
    assert cidr == subnet(), f"request_pool({subnet()!r}) returned the CIDR {cidr!r}"
    ipam.release_pool(pool_id)


def test_a_pool_is_not_given_twice(ipam):
    from pallet.kernel.errors import Conflict

    pool_id, _ = ipam.request_pool(subnet())
    harness.raises_documented(Conflict, ipam.request_pool, subnet(), what="request_pool() of a pool already reserved")
    ipam.release_pool(pool_id)
    again, _ = ipam.request_pool(subnet())  # released: it can be reserved again
    ipam.release_pool(again)


def test_free_pools_do_not_overlap(ipam):
    first_id, first = ipam.request_pool()
    second_id, second = ipam.request_pool()
    try:
        a, b = ipaddress.IPv4Network(first), ipaddress.IPv4Network(second)
        assert not a.overlaps(b), f"two request_pool() calls without a subnet gave overlapping pools {a} and {b}"
    finally:
        ipam.release_pool(first_id)
        ipam.release_pool(second_id)


def test_addresses_are_unique_and_in_the_pool(ipam):
    pool_id, cidr = ipam.request_pool(subnet())
    network = ipaddress.IPv4Network(cidr)
    gateway = ipam.request_address(pool_id, "", GATEWAY_REQUEST)
    addresses = [ipam.request_address(pool_id) for _ in range(20)]
    for address in [gateway, *addresses]:
        interface = ipaddress.IPv4Interface(address)
        assert interface.network == network, f"request_address() returned {address}, want an address/{network.prefixlen} in {network}"
        assert interface.ip not in (network.network_address, network.broadcast_address), \
            f"request_address() returned the network or broadcast address {address}"
    assert len({gateway, *addresses}) == 21, f"an address was handed out twice: {sorted([gateway, *addresses])}"
    ipam.release_pool(pool_id)


def test_a_given_address_is_reserved_once_and_released(ipam):
    from pallet.kernel.errors import Conflict

    pool_id, cidr = ipam.request_pool(subnet())
    wanted = str(ipaddress.IPv4Network(cidr).network_address + 50)
    got = ipam.request_address(pool_id, wanted)
    assert got.split("/")[0] == wanted, f"request_address(pool, {wanted!r}) returned {got!r}"
    harness.raises_documented(Conflict, ipam.request_address, pool_id, wanted,
                              what="request_address() of an address already in use")
    assert wanted not in {ipam.request_address(pool_id).split("/")[0] for _ in range(5)}, \
        "a reserved address was handed out again"
    ipam.release_address(pool_id, got)
    assert ipam.request_address(pool_id, wanted).split("/")[0] == wanted, "a released address cannot be reserved again"
    ipam.release_address(pool_id, wanted)
    ipam.release_address(pool_id, wanted)  # releasing what is free is not an error
    ipam.release_pool(pool_id)


def test_documented_errors(ipam):
    from pallet.kernel.errors import NotFound, UsageError

    pool_id, cidr = ipam.request_pool(subnet())
    outside = str(ipaddress.IPv4Network(subnet(1)).network_address + 5)
    harness.raises_documented(UsageError, ipam.request_address, pool_id, outside,
                              what=f"request_address() of {outside}, outside the pool {cidr}")
    harness.raises_documented(UsageError, ipam.request_pool, "not-a-subnet", what="request_pool() of a malformed subnet")
    ipam.release_pool(pool_id)
    harness.raises_documented(NotFound, ipam.request_address, pool_id, what="request_address() in a released pool")
    ipam.release_pool(pool_id)  # releasing a pool twice is not an error


def test_state_survives_a_new_driver_object(ipam, request, ipam_driver_name):
    pool_id, _ = ipam.request_pool(subnet())
    taken = ipam.request_address(pool_id)
    again = harness.open_for_kit("ipam", ipam_driver_name, str(ipam.home), dict(ipam.options),
                                 root=str(ipam.context.root), run_root=str(ipam.context.run_root))
    from pallet.kernel.errors import Conflict

    harness.raises_documented(Conflict, again.request_pool, subnet(),
                              what="request_pool() in another process (a new driver object) of a reserved pool")
    assert again.request_address(pool_id) != taken, "another process got an address already handed out"
    again.release_pool(pool_id)
